#!/usr/bin/env python3
"""Deploy lifecycle benchmark on the local environment (`make bench-deploy`).

Prints one table: a fresh full run of site.yml, the no-op re-run (time and changed count),
a new release rolled out while a load generator sends requests through nginx the whole
time (requests sent, requests failed), a rollback, a rotation of the API token and the
database password under reads and writes that keep sending the old token, and the teardown.

It tears down any running local demo first and leaves none behind. Traffic goes only to
loopback (nginx published on 127.0.0.1:8443 as https://localhost:8443, the emulated AWS API on
127.0.0.1:5050).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
# HTTPS as clients reach the demo: the name in its certificate, verified against the local ACME root.
BASE_HOST, BASE_PORT = "localhost", 8443
ACME_ROOT = ROOT / ".state/local/acme/root.pem"
LOAD_THREADS = 4
LOAD_PAUSE_SECONDS = 0.005  # per thread between requests: steady traffic (a few hundred req/s),
# not a saturation test — it must not starve the rollout it watches of the machine's 2 cores
LOAD_MAX_SECONDS = 600  # the load stops by itself even if the rollout hangs
RECAP = re.compile(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Row:
    step: str
    seconds: float
    changed: int | None = None
    notes: str = ""


@dataclass
class Load:
    """Paced keep-alive requests through nginx until stopped (GET /flags/<name>, or with a token
    PUT toggling it); counts every failure."""

    path: str
    token: str | None = None
    sent: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self) -> None:
        conn = connect()
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if self.token is None:
                    conn.request("GET", self.path)
                else:
                    conn.request("PUT", self.path, body=json.dumps({"is_enabled": self.sent % 2 == 0}),
                                 headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                detail = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                ok, detail = False, type(exc).__name__
                conn.close()
                conn = connect()
            with self._lock:
                self.sent += 1
                if not ok:
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(detail)
            self._stop.wait(LOAD_PAUSE_SECONDS)
        conn.close()

    def __enter__(self) -> "Load":
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(LOAD_THREADS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def connect() -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(BASE_HOST, BASE_PORT, timeout=10,
                                       context=ssl.create_default_context(cafile=str(ACME_ROOT)))


def run(*cmd: str, log: str) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{BIN}:{os.environ['PATH']}")
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    log_path = ROOT / ".cache" / f"bench-deploy-{log}.log"
    log_path.parent.mkdir(exist_ok=True)
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"bench-deploy: step '{log}' failed (exit {proc.returncode}); see {log_path}")
    return elapsed, proc.stdout


def changed(output: str) -> int:
    return sum(int(m.group(1)) for m in RECAP.finditer(output))


def playbook(name: str, *extra: str, log: str) -> tuple[float, int]:
    elapsed, out = run(str(BIN / "ansible-playbook"), "-i", "inventories/local", f"playbooks/{name}", *extra, log=log)
    return elapsed, changed(out)


def secret(name: str) -> str:
    """A secret of the local environment, from its (emulated) SSM Parameter Store."""
    return run(str(BIN / "python"), "scripts/secret.py", "local", name, log=f"secret-{name}")[1].strip()


def api(method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    token = secret("api_token")
    conn = connect()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def live_build() -> str:
    conn = connect()
    conn.request("GET", "/version")
    return json.loads(conn.getresponse().read())["build"]


def main() -> None:
    rows: list[Row] = []
    run("bash", "scripts/local-env.sh", "down", log="reset")

    start = time.monotonic()
    run("bash", "scripts/local-env.sh", "up", log="local-env-up")
    seconds, count = playbook("site.yml", log="fresh")
    rows.append(Row("fresh full run (containers + site.yml)", time.monotonic() - start, count))

    seconds, count = playbook("site.yml", log="noop")
    rows.append(Row("no-op re-run of site.yml", seconds, count, "target <= 30 s, changed=0"))

    api("POST", "/flags", {"name": "bench-rollout", "is_enabled": True})
    before = live_build()
    release = f"bench-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    with Load("/flags/bench-rollout") as load:
        time.sleep(2)  # traffic flows before the rollout starts
        seconds, count = playbook("deploy.yml", "-e", f"release_build_id_override={release}", log="rollout")
        time.sleep(2)  # and keeps flowing after the switch
    after = live_build()
    assert after == release != before, f"rollout did not switch: before {before}, after {after}"
    notes = f"sent {load.sent}, failed {load.failed}" + (f" ({', '.join(load.failures)})" if load.failures else "")
    rows.append(Row("new release under load (deploy.yml)", seconds, count, notes + "; target <= 60 s, 0 failed"))

    seconds, count = playbook("rollback.yml", "-e", "confirm_rollback=local", log="rollback")
    back = live_build()
    assert back == before, f"rollback did not restore {before}: live is {back}"
    rows.append(Row("rollback to the previous release", seconds, count, f"live again: {back}; target <= 20 s"))

    old_token = secret("api_token")
    with Load("/flags/bench-rollout") as reads, Load("/flags/bench-rollout", token=old_token) as writes:
        time.sleep(2)
        seconds, count = playbook("rotate.yml", "-e", "confirm_rotate=local", log="rotate")
        time.sleep(2)  # the old token still writes after the switch
    assert secret("api_token") != old_token, "the token was not rotated"
    notes = (f"reads sent {reads.sent}, failed {reads.failed}; writes with the old token sent {writes.sent}, "
             f"failed {writes.failed}" + (f" ({', '.join(reads.failures + writes.failures)})"
                                           if reads.failures or writes.failures else "") + "; target 0 failed")
    rows.append(Row("rotation under load (rotate.yml)", seconds, count, notes))

    api("DELETE", "/flags/bench-rollout")
    start = time.monotonic()
    playbook("destroy.yml", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true", log="destroy")
    run("bash", "scripts/local-env.sh", "down", log="local-env-down")
    rows.append(Row("teardown (destroy.yml + containers)", time.monotonic() - start))

    print(f"\n{'step':<42} {'seconds':>8} {'changed':>8}  notes")
    print("-" * 100)
    for row in rows:
        count = "" if row.changed is None else str(row.changed)
        print(f"{row.step:<42} {row.seconds:>8.1f} {count:>8}  {row.notes}")
    forks = subprocess.run([str(BIN / "ansible-config"), "dump", "--only-changed"], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))).stdout
    print(f"\nControl node: Python {platform.python_version()} from {os.path.realpath(sys.executable)}, {os.cpu_count()} cores")
    print("Ansible settings in effect (ansible-config dump --only-changed):")
    print("\n".join("  " + line for line in forks.splitlines() if line.strip()))


if __name__ == "__main__":
    main()
