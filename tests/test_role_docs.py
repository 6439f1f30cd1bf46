"""Role variables are documented once: the defaults/main.yml comment above a variable is its
description and its value the default; argument_specs and the README Variables table follow.

Runs scripts/role_docs.py as a user would: `--check` for every role, and against a copy of a
role with one fact changed in one place, to prove each kind of drift is caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "role_docs.py"
ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/defaults/main.yml"))


def role_docs(*args: str, roles_dir: Path = ROOT / "roles") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--roles-dir", str(roles_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("role", ROLES)
def test_role_variables_are_documented_once_and_agree(role: str) -> None:
    result = role_docs("--check", role)
    assert result.returncode == 0, f"{role} drifted (fix the source, then scripts/role_docs.py --write):\n{result.stdout}"


@pytest.fixture
def validate_copy(tmp_path: Path) -> Path:
    """A copy of the validate role to break."""
    shutil.copytree(ROOT / "roles" / "validate", tmp_path / "roles" / "validate")
    return tmp_path / "roles" / "validate"


def edit_readme_description(role: Path) -> None:
    replace_once(role / "README.md", "Seconds each request may take.", "Seconds each request may last.")


def edit_defaults_comment(role: Path) -> None:
    replace_once(role / "defaults" / "main.yml", "# Seconds each request may take.", "# Seconds a request may take.")


def edit_spec_description(role: Path) -> None:
    replace_once(role / "meta" / "argument_specs.yml", "description: Seconds each request may take.",
                 "description: Request timeout.")


def edit_spec_default(role: Path) -> None:
    replace_once(role / "meta" / "argument_specs.yml", "        type: int\n        default: 10\n        description: Seconds",
                 "        type: int\n        default: 30\n        description: Seconds")


def drop_spec_default(role: Path) -> None:
    replace_once(role / "meta" / "argument_specs.yml", "        type: int\n        default: 10\n        description: Seconds",
                 "        type: int\n        description: Seconds")


def add_undeclared_default(role: Path) -> None:
    with (role / "defaults" / "main.yml").open("a", encoding="utf-8") as defaults:
        defaults.write("# Seconds before the first request.\nvalidate_initial_delay: 0\n")


def add_unbacked_option(role: Path) -> None:
    replace_once(role / "meta" / "argument_specs.yml", "    options:\n",
                 "    options:\n      validate_retries:\n        type: int\n        description: Retries.\n")


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        (edit_readme_description, "README.md row differs"),
        (edit_defaults_comment, "main.validate_timeout: description"),
        (edit_spec_description, "main.validate_timeout: description 'Request timeout.'"),
        (edit_spec_default, "main.validate_timeout: default 30 != defaults/main.yml 10"),
        (drop_spec_default, "main.validate_timeout: no default"),
        (add_undeclared_default, "validate_initial_delay: in no argument_specs entry point"),
        (add_unbacked_option, "main.validate_retries: neither in defaults/main.yml nor required"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_check_reports_a_fact_changed_in_one_place(validate_copy: Path, edit: Callable[[Path], None], reported: str) -> None:
    assert role_docs("--check", roles_dir=validate_copy.parent).returncode == 0
    edit(validate_copy)
    result = role_docs("--check", roles_dir=validate_copy.parent)
    assert result.returncode == 1
    assert reported in result.stdout, result.stdout


def test_write_regenerates_the_table_from_the_defaults_comment_and_keeps_the_prose(validate_copy: Path) -> None:
    readme = validate_copy / "README.md"
    prose_before = readme.read_text(encoding="utf-8").split("## Variables")[0]
    replace_once(validate_copy / "defaults" / "main.yml", "# Seconds each request may take.",
                 "# Seconds each request may take | at most.")
    replace_once(validate_copy / "meta" / "argument_specs.yml", "description: Seconds each request may take.",
                 'description: "Seconds each request may take | at most."')

    assert role_docs("--write", roles_dir=validate_copy.parent).returncode == 0

    text = readme.read_text(encoding="utf-8")
    assert "| `validate_timeout` | `10` | Seconds each request may take \\| at most. |" in text
    assert text.startswith(prose_before)
    assert role_docs("--check", roles_dir=validate_copy.parent).returncode == 0
