#!/usr/bin/env python3
"""Role variables, documented once.

The comment directly above a variable in a role's defaults/main.yml is its description, and the
value below that comment is its default. A required variable with no default has only its
meta/argument_specs.yml entry, whose description is then the source. Everything else is derived
from those sources or checked against them:

  --check (default)  exit 1 and list every drift: a README Variables table that differs from
                     the generated one; an argument_specs option (any entry point) whose
                     description or default differs from defaults/main.yml (a default left out
                     counts, unless the option is required), or that is neither in
                     defaults/main.yml nor required; a public default declared in no entry point.
  --write            regenerate each README's Variables table (between the role_docs markers, or
                     the first table under "## Variables"), then check.

A default that must stay out of argument_specs on purpose is named in that file by a comment
line `# role_docs: undeclared <variable>` next to the reason.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"
TABLE_BEGIN = "<!-- role_docs: begin variables (generated from defaults/main.yml by scripts/role_docs.py --write) -->"
TABLE_END = "<!-- role_docs: end variables -->"
TABLE_HEAD = "| Variable | Default | Description |\n|---|---|---|"
KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(?:\s+(.*))?$")
UNDECLARED = re.compile(r"^\s*#\s*role_docs:\s*undeclared\s+(\S+)", re.M)
VARIABLES_HEADING = re.compile(r"^##\s+Variables\s*$", re.M)


@dataclass
class Variable:
    """One role variable as the reader sees it: name, default (YAML source) and description."""

    name: str
    description: str
    source: str | None  # the default as written in defaults/main.yml; None when required
    value: Any = None
    multiline: bool = False


# --- reading the sources ------------------------------------------------------------------


def comment_text(line: str) -> str:
    """The text of a full-line YAML comment, without the hash and the one space after it."""
    text = line[1:]
    return text[1:] if text.startswith(" ") else text


def strip_inline_comment(text: str, value: Any) -> str:
    """The value's source without a trailing `# comment`, kept only if it still loads the same."""
    for match in re.finditer(r"\s#", text):
        candidate = text[: match.start()].rstrip()
        try:
            if yaml.safe_load(candidate or "null") == value:
                return candidate
        except yaml.YAMLError:
            continue
    return text.strip()


def read_defaults(path: Path) -> dict[str, Variable]:
    """Each top-level variable of defaults/main.yml with the comment block directly above it."""
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    found: dict[str, Variable] = {}
    comments: list[str] = []
    current: Variable | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(comment_text(line))
            continue
        if not line.strip() or line in ("---", "..."):
            comments, current = [], None
            continue
        key = KEY_LINE.match(line)
        if key:
            name, rest = key.group(1), (key.group(2) or "").strip()
            current = Variable(name, " ".join(" ".join(comments).split()), rest, values.get(name))
            current.multiline = rest == "" or rest[0] in "|>"
            found[name] = current
        elif current is not None and not line.lstrip().startswith("#"):
            current.multiline = True
        comments = []
    for var in found.values():
        if not var.multiline and var.source is not None:
            var.source = strip_inline_comment(var.source, var.value)
    return found


def read_specs(path: Path) -> dict[str, dict[str, Any]]:
    """The entry points of meta/argument_specs.yml, by name (none when the file is missing)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    data = data or {}
    return data.get("argument_specs") or {}


def undeclared(path: Path) -> set[str]:
    """Defaults that argument_specs.yml leaves out on purpose (`# role_docs: undeclared NAME`)."""
    return set(UNDECLARED.findall(path.read_text(encoding="utf-8"))) if path.exists() else set()


def spec_description(option: dict[str, Any]) -> str:
    """An option's description as one line: a string, or a list of strings joined with spaces."""
    description = option.get("description", "")
    if isinstance(description, list):
        description = " ".join(str(part) for part in description)
    return " ".join(str(description).split())


def spec_options(specs: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(entry point, option name, option) for every top-level option of every entry point."""
    return [
        (entry, name, option or {})
        for entry, spec in specs.items()
        for name, option in ((spec or {}).get("options") or {}).items()
    ]


def role_variables(role: Path) -> list[Variable]:
    """What the README documents: required variables without a default, then the defaults in order."""
    defaults = read_defaults(role / "defaults" / "main.yml")
    required = {
        name: Variable(name, spec_description(option), None)
        for _, name, option in spec_options(read_specs(role / "meta" / "argument_specs.yml"))
        if option.get("required") and name not in defaults
    }
    public = [var for name, var in defaults.items() if not name.startswith("__")]
    return list(required.values()) + public


# --- the README table ---------------------------------------------------------------------


def code(text: str) -> str:
    """Inline Markdown code, fenced so that a backtick inside stays literal."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_default(var: Variable) -> str:
    """The Default cell: `required`, the one-line source as written, or the loaded value in flow style."""
    if var.source is None:
        return "required"
    if not var.multiline:
        return code(var.source)
    flow = yaml.safe_dump(var.value, default_flow_style=True, width=1 << 20, sort_keys=False, allow_unicode=True)
    return code(flow.strip().removesuffix("...").strip())


def cell(text: str) -> str:
    """A Markdown table cell: pipes escaped."""
    return text.replace("|", "\\|")


def prose(text: str) -> str:
    """Description text for Markdown: a placeholder such as <name> stays text, not an HTML tag."""
    return re.sub(r"<(?=[A-Za-z/])", r"\\<", text)


def render_table(variables: list[Variable]) -> str:
    """The Variables table, one row per variable."""
    rows = [f"| {cell(code(v.name))} | {cell(render_default(v))} | {cell(prose(v.description))} |" for v in variables]
    return "\n".join([TABLE_HEAD, *rows])


def table_span(readme: str) -> tuple[int, int] | None:
    """Where the Variables table sits in the README: between the markers, else the first table under ## Variables."""
    begin, end = readme.find(TABLE_BEGIN), readme.find(TABLE_END)
    if begin >= 0 and end > begin:
        return begin, end + len(TABLE_END)
    heading = VARIABLES_HEADING.search(readme)
    if heading is None:
        return None
    table = re.compile(r"^\|.*\n(?:\|.*(?:\n|$))*", re.M).search(readme, heading.end())
    next_heading = re.compile(r"^#{1,2}\s", re.M).search(readme, heading.end())
    if table is None or (next_heading is not None and next_heading.start() < table.start()):
        return None
    return table.start(), table.end() - (1 if table.group().endswith("\n") else 0)


def current_table(readme: str) -> str | None:
    """The Variables table as the README has it (markers left out), or None."""
    span = table_span(readme)
    if span is None:
        return None
    block = readme[span[0] : span[1]]
    return block.replace(TABLE_BEGIN, "").replace(TABLE_END, "").strip()


def with_table(readme: str, table: str) -> str:
    """The README with its Variables table replaced by the generated one, between markers."""
    block = f"{TABLE_BEGIN}\n{table}\n{TABLE_END}"
    span = table_span(readme)
    if span is None:
        return readme.rstrip("\n") + f"\n\n## Variables\n\n{block}\n"
    return readme[: span[0]] + block + readme[span[1] :]


# --- the checks ---------------------------------------------------------------------------


def table_drift(readme: Path, expected: str) -> list[str]:
    """How the README's Variables table differs from the generated one, row by row."""
    if not readme.exists():
        return ["README.md is missing"]
    found = current_table(readme.read_text(encoding="utf-8"))
    if found is None:
        return ["README.md has no Variables table"]
    if found == expected.strip():
        return []
    have, want = found.splitlines(), expected.strip().splitlines()
    drifts = [f"README.md row differs, has: {row}" for row in have if row not in want]
    drifts += [f"README.md row differs, wants: {row}" for row in want if row not in have]
    return drifts or ["README.md Variables table rows are in another order than defaults/main.yml"]


def option_drift(entry: str, name: str, option: dict[str, Any], defaults: dict[str, Variable]) -> list[str]:
    """How one argument_specs option disagrees with defaults/main.yml."""
    where = f"meta/argument_specs.yml {entry}.{name}"
    var = defaults.get(name)
    if var is None:
        return [] if option.get("required") else [f"{where}: neither in defaults/main.yml nor required"]
    drifts = []
    if spec_description(option) != var.description:
        drifts.append(f"{where}: description {spec_description(option)!r} != defaults comment {var.description!r}")
    if "default" in option and option["default"] != var.value:
        drifts.append(f"{where}: default {option['default']!r} != defaults/main.yml {var.value!r}")
    if "default" not in option and not option.get("required") and var.value is not None:
        drifts.append(f"{where}: no default (ansible-doc shows null), defaults/main.yml has {var.value!r}")
    return drifts


def defaults_drift(defaults: dict[str, Variable], declared: set[str], exempt: set[str]) -> list[str]:
    """Public defaults without a comment, or declared in no argument_specs entry point."""
    drifts = []
    for name, var in defaults.items():
        if name.startswith("__"):
            continue
        if not var.description:
            drifts.append(f"defaults/main.yml {name}: no comment directly above it")
        if name not in declared and name not in exempt:
            drifts.append(f"defaults/main.yml {name}: in no argument_specs entry point")
    return drifts


def check_role(role: Path) -> list[str]:
    """Every drift of one role, each prefixed with the role's path."""
    specs_path = role / "meta" / "argument_specs.yml"
    defaults = read_defaults(role / "defaults" / "main.yml")
    options = spec_options(read_specs(specs_path))
    drifts = [d for entry, name, option in options for d in option_drift(entry, name, option, defaults)]
    drifts += defaults_drift(defaults, {name for _, name, _ in options}, undeclared(specs_path))
    drifts += table_drift(role / "README.md", render_table(role_variables(role)))
    return [f"roles/{role.name}/{drift}" for drift in drifts]


def write_role(role: Path) -> bool:
    """Regenerate the role's README Variables table; True when the file changed."""
    readme = role / "README.md"
    before = readme.read_text(encoding="utf-8") if readme.exists() else f"# {role.name}\n"
    after = with_table(before, render_table(role_variables(role)))
    if after != before:
        readme.write_text(after, encoding="utf-8")
    return after != before


def roles_in(roles_dir: Path, names: list[str]) -> list[Path]:
    """The roles to work on: the named ones, else every role with a defaults/main.yml."""
    if names:
        return [roles_dir / name for name in names]
    return sorted(p.parent.parent for p in roles_dir.glob("*/defaults/main.yml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="list every drift, exit 1 if any (default)")
    mode.add_argument("--write", action="store_true", help="regenerate the README Variables tables, then check")
    parser.add_argument("--roles-dir", type=Path, default=ROLES_DIR, help="folder of the roles (default: roles/)")
    parser.add_argument("roles", nargs="*", help="role names (default: every role)")
    args = parser.parse_args(argv)
    roles = roles_in(args.roles_dir, args.roles)
    if args.write:
        for role in roles:
            if write_role(role):
                print(f"wrote roles/{role.name}/README.md")
    drifts = [drift for role in roles for drift in check_role(role)]
    for drift in drifts:
        print(drift)
    if drifts:
        print(f"{len(drifts)} drift(s); descriptions and defaults come from defaults/main.yml", file=sys.stderr)
    return 1 if drifts else 0


if __name__ == "__main__":
    sys.exit(main())
