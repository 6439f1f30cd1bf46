"""release_build makes a wheelhouse for the target hosts, whatever the control node runs.

The real role runs through ansible-playbook (localhost) and fetches from the package index; each
target builds once per module. Whether a wheel installs on the target is decided from the
target's own tag set, never from the Python running these tests.
"""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from conftest import BIN, ROOT, ansible_env

PLAYBOOK = """\
- name: Build one release on the control node
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - role: release_build
"""
LOCK = ROOT / "service" / "requirements.lock"
AARCH64 = {"release_build_target_platforms": ["manylinux_2_36_aarch64"]}


def debian12_tags(arch: str) -> set[Tag]:
    """The wheel tags pip on Debian 12 (glibc 2.36, CPython 3.11) accepts, for one architecture."""
    # PEP 600: a glibc 2.36 host runs manylinux wheels for any glibc from the oldest manylinux of
    # its arch (2.5 on x86_64, 2.17 elsewhere) up; PEP 513/571/599 name 2.5, 2.12 and 2.17.
    oldest = 5 if arch == "x86_64" else 17
    legacy = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(36, oldest - 1, -1)]
    platforms += [f"{legacy[minor]}_{arch}" for minor in legacy if minor >= oldest]
    return set(cpython_tags((3, 11), ["cp311"], platforms)) | set(compatible_tags((3, 11), "cp311", platforms))


def target_environment(arch: str) -> dict[str, str]:
    """PEP 508 marker values of CPython 3.11 on Debian 12."""
    return {
        "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
        "implementation_version": "3.11.2", "platform_python_implementation": "CPython",
        "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": arch,
    }


def locked() -> dict[str, Version]:
    pins = (line.split("#")[0].strip() for line in LOCK.read_text().splitlines())
    return {canonicalize_name(name): Version(version) for name, version in (pin.split("==") for pin in pins if pin)}


def run_role(output_dir: Path, extra_vars: dict, *args: str, python: str | None = None) -> str:
    playbook = output_dir.parent / "play.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"release_build_source_dir": str(ROOT / "service"), "release_build_output_dir": str(output_dir),
             **extra_vars}
    if python:
        extra["release_build_python"] = python
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extra), *args],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def changed(stdout: str) -> int:
    return int(re.search(r"localhost\s*:.*\bchanged=(\d+)", stdout)[1])


class Build:
    """One finished build: its release folder, manifest and wheels by project name."""

    def __init__(self, release_dir: Path):
        self.dir = release_dir
        self.manifest = json.loads((release_dir / "release.json").read_text())
        self.id = self.manifest["id"]
        self.wheels = {parse_wheel_filename(p.name)[0]: p for p in (release_dir / "wheelhouse").glob("*.whl")}


def build(output_dir: Path, extra_vars: dict, python: str | None = None) -> Build:
    before = set(output_dir.iterdir()) if output_dir.exists() else set()
    run_role(output_dir, extra_vars, python=python)
    new = set(output_dir.iterdir()) - before
    existing = sorted(p.name for p in before)
    assert len(new) == 1, f"a build for {extra_vars} made {len(new)} new release folders beside {existing}"
    return Build(new.pop())


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    """One output folder for every target, as on a control node that deploys to several."""
    return tmp_path_factory.mktemp("release_build") / "releases"


@pytest.fixture(scope="module")
def x86_64(output_dir) -> Build:
    return build(output_dir, {})


@pytest.fixture(scope="module")
def aarch64(output_dir, x86_64) -> Build:
    return build(output_dir, AARCH64)


@pytest.fixture(params=["x86_64", "aarch64"])
def target(request) -> tuple[str, Build]:
    return request.param, request.getfixturevalue(request.param)


def test_every_wheel_installs_on_the_target(target):
    arch, built = target
    supported = debian12_tags(arch)
    foreign = [p.name for p in built.wheels.values() if not parse_wheel_filename(p.name)[3] & supported]
    assert not foreign, f"wheels the {arch} Debian 12 hosts cannot install: {foreign}"


def test_every_dependency_of_the_service_is_in_the_wheelhouse(target):
    # What pip on the host resolves offline: requirements whose markers hold on the target.
    arch, built = target
    environment = target_environment(arch)
    missing, seen, todo = [], set(), [("togglemaster", "")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        with zipfile.ZipFile(built.wheels[canonicalize_name(name)]) as wheel:
            metadata = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        for line in email.message_from_string(metadata).get_all("Requires-Dist", []):
            req = Requirement(line)
            if req.marker and not req.marker.evaluate({**environment, "extra": extra}):
                continue
            wheel_path = built.wheels.get(canonicalize_name(req.name))
            version = parse_wheel_filename(wheel_path.name)[1] if wheel_path else None
            if version is None or not req.specifier.contains(version, prereleases=True):
                missing.append(f"{name}[{extra}] needs {req}")
                continue
            todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
    assert not missing, f"the {arch} wheelhouse cannot install the service offline: {missing}"


def test_the_wheelhouse_holds_exactly_the_locked_versions(target):
    arch, built = target
    versions = {name: parse_wheel_filename(p.name)[1] for name, p in built.wheels.items() if name != "togglemaster"}
    assert versions == locked()


def test_the_service_wheel_carries_the_release_id(x86_64):
    with zipfile.ZipFile(x86_64.wheels["togglemaster"]) as wheel:
        generated = wheel.read("togglemaster/_build.py").decode()
    assert f"BUILD_ID = {x86_64.id!r}" in generated
    assert parse_wheel_filename(x86_64.wheels["togglemaster"].name)[3] == {Tag("py3", "none", "any")}


def test_another_target_gets_other_wheels_under_another_release_id(x86_64, aarch64):
    assert aarch64.id != x86_64.id
    assert re.fullmatch(r"[A-Za-z0-9._-]+", aarch64.id) and aarch64.dir.name == aarch64.id
    assert x86_64.wheels["psycopg-binary"].name != aarch64.wheels["psycopg-binary"].name
    assert "manylinux_2_36_aarch64" in aarch64.manifest["target"]["platforms"]
    assert "manylinux1_x86_64" in x86_64.manifest["target"]["platforms"]


def test_a_second_run_for_the_same_target_reuses_the_build(output_dir, x86_64, aarch64):
    mtime = (x86_64.dir / "wheelhouse").stat().st_mtime_ns
    for args in ([], ["--check", "--diff"]):
        stdout = run_role(output_dir, {}, *args)
        assert changed(stdout) == 0, stdout[-3000:]
    assert sorted(p.name for p in output_dir.iterdir()) == sorted([x86_64.id, aarch64.id])
    assert (x86_64.dir / "wheelhouse").stat().st_mtime_ns == mtime


def other_python() -> str | None:
    """A Python 3.12+ on PATH (one that runs), to play a control node that is not the hosts'."""
    for name in ("python3.15", "python3.14", "python3.13", "python3.12"):
        path = shutil.which(name)
        if path and subprocess.run([path, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return path
    return None


@pytest.mark.skipif(other_python() is None, reason="no Python 3.12+ with pip on PATH")
def test_a_control_node_on_another_python_builds_the_same_release(tmp_path, x86_64):
    other = build(tmp_path / "releases", {}, python=other_python())
    assert other.id == x86_64.id
    assert sorted(p.name for p in other.wheels.values()) == sorted(p.name for p in x86_64.wheels.values())
