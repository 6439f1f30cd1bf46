"""Releases over time, from the control node: a new release under load, the rollback playbook
(previous release, a named older one, check mode), the cleanup of old releases, and broken
releases that must roll themselves back while the old one serves.

Each test sets up what it needs: `ensure_releases(n)` deploys new releases until n that went
live are installed. In file order, later tests find most of it done by earlier ones. When the
module is done, the release converge put live is live again and what the module added is gone,
so test_host.py, test_check_mode.py and a re-run of verify find the host as converge left it.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from conftest import BASE_URL, REPO, WEB, live_build, on_host, playbook, recap

ROOT = "/opt/togglemaster"
# Deploy only the application: the platform roles already ran in converge.
APP_TAGS = "release_build,flag_service,validate"


def history() -> list[str]:
    """The go-live history on the web host, oldest first."""
    return on_host(WEB, f"cat {ROOT}/HISTORY").split()


def installed() -> dict[str, float]:
    """Installed release ids and the modification times of their folders (the install time:
    cleanup.yml orders by it)."""
    out = on_host(WEB, f"find {ROOT}/releases -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\\n'")
    return {name: float(mtime) for mtime, name in (line.split(" ", 1) for line in out.splitlines())}


def went_live() -> list[str]:
    """Installed releases that went live, in the order of their last go-live (HISTORY's)."""
    present = installed()
    return [release for release in history() if release in present]


def host_records() -> str:
    """What a rollback changes on the web host: current, RELEASE, HISTORY, releases, service process."""
    return on_host(WEB, f"readlink {ROOT}/current; cat {ROOT}/RELEASE {ROOT}/HISTORY; ls -l --time-style=full-iso "
                        f"{ROOT}/releases; systemctl show -p MainPID --value togglemaster.service")


def newest_first(releases: dict[str, float]) -> list[str]:
    return sorted(releases, key=releases.__getitem__, reverse=True)


def new_release_id(tag: str) -> str:
    """A release id no earlier run used (ids are [A-Za-z0-9._-]; a deploy takes more than a second)."""
    return f"{tag}-{time.strftime('%Y%m%d%H%M%S')}"


def deploy(release: str, *args: str) -> subprocess.CompletedProcess:
    return playbook("deploy.yml", "--tags", APP_TAGS, "-e", f"release_build_id_override={release}", *args)


def rollback(*args: str) -> subprocess.CompletedProcess:
    return playbook("rollback.yml", "-e", "confirm_rollback=molecule", *args)


def ensure_releases(count: int) -> list[str]:
    """At least `count` installed releases went live (new ones are deployed if not); returns them
    in HISTORY order, the live one last."""
    for _ in range(count):
        if len(went_live()) >= count:
            break
        proc = deploy(new_release_id("extra"))
        assert proc.returncode == 0, proc.stdout[-3000:]
    releases = went_live()
    assert len(releases) >= count, f"needs {count} installed releases that went live, has {releases}"
    return releases


def previous_release() -> str:
    """The release live before the current one that is still installed: rollback.yml's default."""
    live = live_build()
    return [release for release in went_live() if release != live][-1]


class Load:
    """Threads requesting the API through nginx until stopped; every non-200 is a failure.
    Each thread pauses briefly between requests so the load does not starve the deploy of CPU.
    It records the builds /health reported, so a test can wait until the load saw one serve."""

    def __init__(self, threads: int = 4, pause: float = 0.01) -> None:
        self.pause = pause
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.builds: set[str] = set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, index: int) -> None:
        paths = ("/flags", "/health", "/ready")
        n = 0
        while not self.stop.is_set():
            path = paths[(n + index) % len(paths)]
            n += 1
            build = None
            try:
                with urllib.request.urlopen(f"{BASE_URL}{path}", timeout=30) as resp:
                    body = resp.read()
                    ok = resp.status == 200
                    detail = f"{path} {resp.status}"
                if ok and path == "/health":
                    build = json.loads(body)["build"]
            except urllib.error.HTTPError as exc:
                ok, detail = False, f"{path} {exc.code} {exc.read()[:200]!r}"
            except OSError as exc:
                ok, detail = False, f"{path} {exc}"
            with self.lock:
                if ok:
                    self.ok += 1
                    self.builds.update([build] if build else [])
                else:
                    self.failures.append(detail)
            self.stop.wait(self.pause)

    def served(self, build: str, timeout: float = 120) -> bool:
        """Waits until a request of the load was answered by `build`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if build in self.builds:
                    return True
            time.sleep(0.1)
        return False

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        # The load runs before the playbook starts: the live release answered it.
        assert self.served(live_build()), f"the load got no answer: {self.failures[:5]}"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)
        print(f"  load through nginx: {self.ok} requests answered 200 by {sorted(self.builds)}, "
              f"{len(self.failures)} failed {self.failures[:5]}")


@pytest.fixture(scope="module", autouse=True)
def converged() -> Iterator[str]:
    """The release converge put live; it is live again after the module, and only the releases
    and the HISTORY that converge left are on the host."""
    release, converged_history, converged_releases = live_build(), history(), set(installed())
    yield release
    if live_build() != release:
        proc = rollback("-e", f"release={release}") if release in installed() else deploy(release)
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == release
    # No playbook removes releases newer than the live one, nor forgets a go-live: the test does.
    added = set(installed()) - converged_releases
    if added:
        on_host(WEB, f"cd {ROOT}/releases && rm -rf -- {' '.join(shlex.quote(r) for r in sorted(added))}")
    lines = "".join(f"{r}\n" for r in converged_history)
    on_host(WEB, f"printf %s {shlex.quote(lines)} > {ROOT}/HISTORY")


def test_a_new_release_switches_over_while_requests_keep_succeeding():
    new = new_release_id("rollout")
    with Load() as load:
        proc = deploy(new)
        switched = proc.returncode == 0 and load.served(new)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == new
    assert switched, "the load never got an answer from the new release"
    assert load.failures == []


def test_rollback_refuses_without_confirmation():
    before = live_build()
    proc = playbook("rollback.yml")
    assert proc.returncode != 0
    assert "Refusing to roll back: confirm with -e confirm_rollback=molecule" in proc.stdout
    assert live_build() == before


def test_rollback_to_a_release_that_is_not_installed_is_refused():
    before = live_build()
    proc = rollback("-e", "release=0.0.0-not-installed")
    assert proc.returncode != 0
    assert "Nothing to roll back to: target '0.0.0-not-installed'" in proc.stdout, proc.stdout[-3000:]
    assert live_build() == before


def test_rollback_playbook_restores_the_previous_release():
    ensure_releases(2)
    previous = previous_release()
    with Load() as load:
        proc = rollback()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == previous
    assert history()[-1] == previous
    assert load.failures == []


def test_rollback_to_a_named_older_release_under_load():
    releases = ensure_releases(3)
    live, previous = live_build(), previous_release()
    # The oldest installed release that went live, neither the live one nor rollback's default.
    ages = installed()
    target = min((r for r in releases if r not in (live, previous)), key=ages.__getitem__)
    with Load() as load:
        proc = rollback("-e", f"release={target}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == target
    assert on_host(WEB, f"cat {ROOT}/RELEASE").strip() == target
    assert history()[-1] == target
    assert load.failures == []


def test_rollback_in_check_mode_changes_nothing_on_the_host():
    ensure_releases(2)
    live, records = live_build(), host_records()
    proc = rollback("--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # A real rollback would switch current and record it: check mode saw that much to do.
    assert recap(proc.stdout)[WEB][0] >= 1, proc.stdout[-3000:]
    assert live_build() == live
    assert host_records() == records


def test_cleanup_keeps_the_newest_releases_and_the_live_and_previously_live_one():
    """cleanup.yml: after a new release is unpacked, the newest flag_service_keep_releases stay (by
    install time, the folder's mtime), and the release going live and the one live before it are
    never removed, however old."""
    keep = 2
    releases = ensure_releases(keep + 2)
    if live_build() in newest_first(installed())[: keep - 1]:
        # The release live before the deploy must be one that the newest-first rule alone would
        # remove: put the oldest one live (HISTORY's order then differs from the install order too).
        oldest = min(releases[:-1], key=installed().__getitem__)
        proc = rollback("-e", f"release={oldest}")
        assert proc.returncode == 0, proc.stdout[-3000:]
    before, live = installed(), live_build()
    kept_by_age = newest_first(before)[: keep - 1]
    assert live not in kept_by_age
    new = new_release_id("keep")
    proc = deploy(new, "-e", json.dumps({"flag_service_keep_releases": keep}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == new
    # The new release is the newest; keep - 1 more by age; the previously live one besides.
    after = set(installed())
    assert after == {new, *kept_by_age, live}, f"installed before, oldest first: {newest_first(before)[::-1]}"
    assert len(set(before) - after) >= 2


def test_a_failing_migration_stops_the_deploy_before_the_switch(tmp_path):
    before = live_build()
    source = tmp_path / "service"
    shutil.copytree(REPO / "service", source, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", "__pycache__", "tests", "bench"))
    (source / "src/togglemaster/migrations/0099.broken.sql").write_text(
        "-- A migration that cannot apply: the deploy must stop before the switch.\n"
        "ALTER TABLE table_that_does_not_exist ADD COLUMN nothing integer;\n"
    )
    with Load() as load:
        proc = playbook("deploy.yml", "--tags", APP_TAGS, "-e", f"release_build_source_dir={source}")
    assert proc.returncode != 0
    assert "NOT put live" in proc.stdout and "togglemaster migrate" in proc.stdout, proc.stdout[-3000:]
    assert f"Rolled back to release {before}" in proc.stdout
    assert live_build() == before
    assert load.failures == []


def test_a_release_that_cannot_start_is_switched_back_automatically():
    """Bad configuration that the pre-switch checks would catch (WEB_THREADS=0 makes the
    service refuse to start); with those checks off, the health gate is what catches it."""
    before = live_build()
    broken = new_release_id("cannot-start")
    with Load() as load:
        proc = deploy(
            broken,
            "-e", json.dumps({
                "flag_service_preflight_check": False,
                "flag_service_run_migrations": False,
                "flag_service_extra_env": {"WEB_THREADS": "0"},
            }),
        )
    assert proc.returncode != 0
    assert f"Release {broken} was NOT put live" in proc.stdout, proc.stdout[-3000:]
    assert f"Rolled back to release {before}, which is serving again" in proc.stdout
    assert live_build() == before
    assert "WEB_THREADS" not in on_host(WEB, "cat /etc/togglemaster/togglemaster.env")
    print(f"  requests failed during the automatic rollback: {len(load.failures)}")
    assert load.failures == []
