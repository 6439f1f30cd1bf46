#!/usr/bin/env python3
"""Print the release identity of a service source tree built for a target as JSON.

id = <version>-<git short sha of the last commit touching the tree>-<build hash>.
The content hash covers every file git would track (committed, modified or untracked,
minus .gitignore'd build output), so the id is stable while nothing changes and moves
as soon as anything in the tree does, committed or not. Top-level folders named after the
source path (tests, bench, ...) are left out: they do not go into the wheel.
The build hash covers the content hash and the target (the hosts' Python and platform tags),
so a wheelhouse fetched for one target is never taken for another's.

usage: release_id.py SOURCE_DIR TARGET_JSON [EXCLUDED_TOP_LEVEL_NAME ...]
TARGET_JSON: {"implementation": "cp", "python_version": "3.11", "abi": "cp311", "platforms": [...]}
"""
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
# PEP 513, 571 and 599 names for glibc 2.5, 2.12 and 2.17.
LEGACY_MANYLINUX = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}


def git(src: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(src), *args], check=True, capture_output=True, text=True).stdout


def platform_tags(platforms: list[str]) -> list[str]:
    """Every platform tag a host of these platforms runs, newest first.

    pip download takes --platform literally, but a host with glibc 2.N also runs manylinux wheels
    built for any older glibc (PEP 600): each manylinux_2_N_<arch> brings the older tags down to
    the oldest manylinux of its arch (glibc 2.5 on x86, 2.17 elsewhere), as pip on that host would.
    """
    tags: list[str] = []
    for platform in platforms:
        match = MANYLINUX.fullmatch(platform)
        if match and match[1] == "2":
            minor, arch = int(match[2]), match[3]
            oldest = 5 if arch in ("x86_64", "i686") else 17
            expanded = []
            for glibc in range(minor, oldest - 1, -1):
                expanded.append(f"manylinux_2_{glibc}_{arch}")
                if (2, glibc) in LEGACY_MANYLINUX:
                    expanded.append(f"{LEGACY_MANYLINUX[(2, glibc)]}_{arch}")
        else:
            expanded = [platform]
        tags += [tag for tag in expanded if tag not in tags]
    return tags


def main(src: Path, target_json: str, excluded: list[str]) -> None:
    version = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
    target = json.loads(target_json)
    target = {
        "implementation": str(target["implementation"]),
        "python_version": str(target["python_version"]),
        "abi": str(target["abi"]),
        "platforms": platform_tags([str(p) for p in target["platforms"]]),
    }
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
    content_hash = digest.hexdigest()
    build_hash = hashlib.sha256(f"{content_hash}\0{json.dumps(target, sort_keys=True)}".encode()).hexdigest()
    release_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"{version}-{sha}-{build_hash[:8]}")
    print(json.dumps({"version": version, "git_sha": sha, "content_hash": content_hash, "target": target, "id": release_id}))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3:])
