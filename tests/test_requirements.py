"""requirements.yml is complete and the installed (bundled) collections satisfy it."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache

import yaml
from ansible.module_utils.compat.version import LooseVersion

from conftest import BIN, ROOT, ansible_env

FQCN = re.compile(r"\b([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b")
SCANNED = ("playbooks", "roles", "molecule", "inventories")


def required() -> dict[str, str]:
    data = yaml.safe_load((ROOT / "requirements.yml").read_text())
    return {c["name"]: c["version"] for c in data["collections"]}


@cache
def installed() -> dict[str, str]:
    out = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
        cwd=ROOT, env=ansible_env(), check=True, capture_output=True, text=True,
    )
    found: dict[str, str] = {}
    for collections in json.loads(out.stdout).values():
        for name, info in collections.items():
            found.setdefault(name, info["version"])
    return found


def satisfies(version: str, spec: str) -> bool:
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
           "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    for clause in spec.split(","):
        match = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*([0-9][0-9.]*)\s*", clause)
        assert match, f"unsupported version clause {clause!r} in requirements.yml"
        op, bound = match.groups()
        if not ops[op](LooseVersion(version), LooseVersion(bound)):
            return False
    return True


def test_version_ranges_are_checked_correctly():
    assert satisfies("10.1.2", ">=10.0.0,<11.0.0")
    assert not satisfies("11.0.0", ">=10.0.0,<11.0.0")
    assert not satisfies("9.9.9", ">=10.0.0,<11.0.0")


def test_every_required_collection_is_installed_in_range():
    have = installed()
    problems = [
        f"{name}: need {spec}, have {have.get(name, 'nothing')}"
        for name, spec in required().items()
        if name not in have or not satisfies(have[name], spec)
    ]
    assert not problems, "installed collections do not satisfy requirements.yml: " + "; ".join(problems)


def test_every_collection_used_is_listed_in_requirements():
    listed = set(required()) | {"ansible.builtin"}
    have = installed()
    used: dict[str, str] = {}
    for folder in SCANNED:
        for path in (ROOT / folder).rglob("*.yml"):
            for match in FQCN.finditer(path.read_text()):
                name = match.group(1)
                if name in have:
                    used.setdefault(name, str(path.relative_to(ROOT)))
    missing = {name: where for name, where in used.items() if name not in listed}
    assert not missing, f"collections used but not in requirements.yml: {missing}"
