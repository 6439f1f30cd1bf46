"""Releases over time, from the control node: a second release under load, the rollback
playbook, and broken releases that must roll themselves back while the old one serves.

These run after test_host.py (pytest runs files in name order) and change what is live.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
BASE_URL = "http://127.0.0.1:18680"  # nginx on the web container, published by molecule.yml
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
# Deploy only the application: the platform roles already ran in converge.
APP_TAGS = "release_build,flag_service,validate"


def live_build() -> str:
    with urllib.request.urlopen(f"{BASE_URL}/health", timeout=10) as resp:
        return json.load(resp)["build"]


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_CACHE_PLUGIN="memory",
        ANSIBLE_PIPELINING="true",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(INVENTORY), str(REPO / "playbooks" / name), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    print(f"\n$ {' '.join(cmd[1:])}\n  rc={proc.returncode} in {time.monotonic() - started:.0f}s")
    return proc


class Load:
    """Threads requesting the API through nginx until stopped; every non-200 is a failure.
    Each thread pauses briefly between requests so the load does not starve the deploy of CPU."""

    def __init__(self, threads: int = 4, pause: float = 0.01) -> None:
        self.pause = pause
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, index: int) -> None:
        paths = ("/flags", "/health", "/ready")
        n = 0
        while not self.stop.is_set():
            path = paths[(n + index) % len(paths)]
            n += 1
            try:
                with urllib.request.urlopen(f"{BASE_URL}{path}", timeout=30) as resp:
                    resp.read()
                    ok = resp.status == 200
                    detail = f"{path} {resp.status}"
            except urllib.error.HTTPError as exc:
                ok, detail = False, f"{path} {exc.code} {exc.read()[:200]!r}"
            except OSError as exc:
                ok, detail = False, f"{path} {exc}"
            with self.lock:
                if ok:
                    self.ok += 1
                else:
                    self.failures.append(detail)
            self.stop.wait(self.pause)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)
        print(f"  load through nginx: {self.ok} requests answered 200, {len(self.failures)} failed "
              f"{self.failures[:5]}")


def test_a_new_release_switches_over_while_requests_keep_succeeding():
    before = live_build()
    new = f"{before}-rollout"
    with Load() as load:
        proc = playbook("deploy.yml", "--tags", APP_TAGS, "-e", f"release_build_id_override={new}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == new
    assert load.ok > 50
    assert load.failures == []


def test_rollback_refuses_without_confirmation():
    before = live_build()
    proc = playbook("rollback.yml")
    assert proc.returncode != 0
    assert "Refusing to roll back: confirm with -e confirm_rollback=molecule" in proc.stdout
    assert live_build() == before


def test_rollback_to_a_release_that_is_not_installed_is_refused():
    before = live_build()
    proc = playbook("rollback.yml", "-e", "confirm_rollback=molecule", "-e", "release=0.0.0-not-installed")
    assert proc.returncode != 0
    assert "Nothing to roll back to: target '0.0.0-not-installed'" in proc.stdout, proc.stdout[-3000:]
    assert live_build() == before


def test_rollback_playbook_restores_the_previous_release():
    history = subprocess.run(
        ["docker", "exec", "tm-deploy-web", "cat", "/opt/togglemaster/HISTORY"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(history) >= 2
    with Load() as load:
        proc = playbook("rollback.yml", "-e", "confirm_rollback=molecule")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert live_build() == history[-2]
    assert load.failures == []


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
    broken = f"{before}-cannot-start"
    with Load() as load:
        proc = playbook(
            "deploy.yml", "--tags", APP_TAGS,
            "-e", f"release_build_id_override={broken}",
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
    env = subprocess.run(
        ["docker", "exec", "tm-deploy-web", "cat", "/etc/togglemaster/togglemaster.env"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "WEB_THREADS" not in env
    print(f"  requests failed during the automatic rollback: {len(load.failures)}")
    assert load.failures == []
