#!/usr/bin/env python3
"""Print the release identity of a service source tree as JSON.

id = <version>-<git short sha of the last commit touching the tree>-<content hash>.
The content hash covers every file git would track (committed, modified or untracked,
minus .gitignore'd build output), so the id is stable while nothing changes and moves
as soon as anything in the tree does, committed or not. Top-level folders named after the
source path (tests, bench, ...) are left out: they do not go into the wheel.

usage: release_id.py SOURCE_DIR [EXCLUDED_TOP_LEVEL_NAME ...]
"""
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path


def git(src: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(src), *args], check=True, capture_output=True, text=True).stdout


def main(src: Path, excluded: list[str]) -> None:
    version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
    pathspec = [".", *(f":(exclude){name}" for name in excluded)]
    try:
        sha = git(src, "log", "-1", "--format=%h", "--", *pathspec).strip() or "untracked"
        files = sorted(set(git(src, "ls-files", "-z", "-c", "-o", "--exclude-standard", "--", *pathspec).split("\0")) - {""})
    except (OSError, subprocess.CalledProcessError):
        sha = "nogit"
        files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and p.relative_to(src).parts[0] not in excluded)
    digest = hashlib.sha256()
    for name in files:
        path = src / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    release_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"{version}-{sha}-{digest.hexdigest()[:8]}")
    print(json.dumps({"version": version, "git_sha": sha, "content_hash": digest.hexdigest(), "id": release_id}))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2:])
