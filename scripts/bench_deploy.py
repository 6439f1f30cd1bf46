#!/usr/bin/env python3
"""Deploy lifecycle benchmark on the local environment (`make bench-deploy`).

Prints one table: a fresh full run of site.yml, the no-op re-run (time and changed count),
a new release rolled out while a load generator sends requests through nginx the whole
time (requests sent, requests failed), a rollback, a rotation of the API token and the
database password under reads and writes that keep sending the old token, and the teardown.

With TOPOLOGY=ha (`make bench-deploy TOPOLOGY=ha`), the load-balanced topology instead: a new
release rolled out under load through HAProxy across 1, 2 and 3 web hosts (time, requests
failed), a host added (2 -> 3) by a re-run of site.yml (time, and what changed on the other
hosts), and one web container killed (`docker kill`) under reads and writes.

It tears down any running local demo first and leaves none behind. Traffic goes only to
loopback (nginx or HAProxy published on 127.0.0.1:8443 as https://localhost:8443, the emulated
AWS API on 127.0.0.1:5050).
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
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The load generator the end-to-end tests use (tests/e2e/local_demo.py).
sys.path[:0] = [str(ROOT / "tests/e2e"), str(ROOT / "tests")]
from local_demo import Load  # noqa: E402
BIN = ROOT / ".venv" / "bin"
# HTTPS as clients reach the demo: the name in its certificate, verified against the local ACME root.
BASE_HOST, BASE_PORT = "localhost", 8443
ACME_ROOT = ROOT / ".state/local/acme/root.pem"
# Per thread between requests: steady traffic (a few hundred req/s), not a saturation test; it
# must not starve the rollout it watches of the machine's 2 cores.
LOAD_PAUSE_SECONDS = 0.005
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Row:
    step: str
    seconds: float
    changed: int | None = None
    notes: str = ""


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
    return sum(int(m.group(2)) for m in RECAP.finditer(output))


def changed_per_host(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in RECAP.finditer(output)}


def playbook(name: str, *extra: str, log: str, inventory: tuple[str, ...] = ("-i", "inventories/local")) -> tuple[float, int]:
    elapsed, out = run(str(BIN / "ansible-playbook"), *inventory, f"playbooks/{name}", *extra, log=log)
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


def ha_inventory(web_hosts: int) -> tuple[str, ...]:
    """The local inventory plus an ha variant with this many web hosts (inventories/local-ha has
    two): the same groups and variables, tm-local-web-2 ... tm-local-web-N."""
    folder = ROOT / ".cache" / f"bench-ha-{web_hosts}"
    folder.mkdir(parents=True, exist_ok=True)
    source = ROOT / "inventories/local-ha"
    hosts = yaml.safe_load((source / "hosts.yml").read_text())
    hosts["local"]["children"]["web"]["hosts"] = {
        f"tm-local-web-{k}": {"ansible_host": "127.0.0.1", "ansible_port": 2222 + k} for k in range(2, web_hosts + 1)}
    (folder / "hosts.yml").write_text(yaml.safe_dump(hosts))
    if not (folder / "group_vars").exists():
        (folder / "group_vars").symlink_to(source / "group_vars")
    return ("-i", "inventories/local", "-i", str(folder))


def rollout_under_load(inventory: tuple[str, ...], label: str) -> tuple[float, str, str]:
    release = f"bench-{label}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    token = secret("api_token")
    with Load("/flags/bench-rollout", pause=LOAD_PAUSE_SECONDS) as reads, \
            Load("/flags/bench-rollout", token=token, threads=1, pause=LOAD_PAUSE_SECONDS) as writes:
        time.sleep(2)
        seconds, _ = playbook("deploy.yml", "-e", f"release_build_id_override={release}", log=f"rollout-{label}",
                              inventory=inventory)
        time.sleep(2)
    assert live_build() == release, f"rollout {label} did not switch"
    return seconds, release, f"reads {reads}; writes {writes}"


def main_ha() -> None:
    rows: list[Row] = []
    run("bash", "scripts/local-env.sh", "down", log="reset")
    os.environ["WEB_COUNT"] = "3"
    start = time.monotonic()
    run("bash", "scripts/local-env.sh", "up", log="local-env-up")
    one, two, three = ha_inventory(1), ha_inventory(2), ha_inventory(3)
    seconds, count = playbook("site.yml", log="fresh-ha-1", inventory=one)
    rows.append(Row("fresh full run, 1 web host behind HAProxy", time.monotonic() - start, count))
    api("POST", "/flags", {"name": "bench-rollout", "is_enabled": True})

    # A host joins with the live release (site.yml would otherwise build and roll out the
    # checkout's own on every host).
    timings = {}
    seconds, live, notes = rollout_under_load(one, "1-host")
    timings[1] = seconds
    rows.append(Row("new release under load, 1 web host", seconds, None, notes + "; target 0 failed"))

    seconds, count = playbook("site.yml", "-e", f"release_build_id_override={live}", log="add-2nd-host",
                              inventory=two)
    rows.append(Row("second web host added (site.yml, 1 -> 2)", seconds, count))
    seconds, live, notes = rollout_under_load(two, "2-hosts")
    timings[2] = seconds
    rows.append(Row("new release under load, 2 web hosts", seconds, None, notes + "; target 0 failed"))

    elapsed, out = run(str(BIN / "ansible-playbook"), *three, "playbooks/site.yml",
                       "-e", f"release_build_id_override={live}", log="add-3rd-host")
    per_host = changed_per_host(out)
    others = {host: per_host[host] for host in ("tm-local-web", "tm-local-web-2")}
    rows.append(Row("third web host added (site.yml, 2 -> 3)", elapsed, sum(per_host.values()),
                    f"changed per host {per_host}; the other web hosts {others}, target 0"))
    seconds, _, notes = rollout_under_load(three, "3-hosts")
    timings[3] = seconds
    rows.append(Row("new release under load, 3 web hosts", seconds, None,
                    notes + f"; target 0 failed, <= 2x 1 host: {seconds / timings[1]:.2f}x"))

    token = secret("api_token")
    with Load("/flags/bench-rollout", pause=LOAD_PAUSE_SECONDS) as reads, \
            Load("/flags/bench-rollout", token=token, threads=1, pause=LOAD_PAUSE_SECONDS) as writes:
        time.sleep(3)
        start = time.monotonic()
        run("docker", "kill", "tm-local-web-3", log="kill")
        time.sleep(15)
    rows.append(Row("web container killed under load (docker kill)", time.monotonic() - start, None,
                    f"reads {reads}; writes {writes}; target 0 failed reads"))

    start = time.monotonic()
    playbook("destroy.yml", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true", log="destroy",
             inventory=three)
    run("bash", "scripts/local-env.sh", "down", log="local-env-down")
    rows.append(Row("teardown (destroy.yml + containers)", time.monotonic() - start))
    report(rows)


def main() -> None:
    if os.environ.get("TOPOLOGY", "single") == "ha":
        main_ha()
        return
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
    with Load("/flags/bench-rollout", pause=LOAD_PAUSE_SECONDS) as load:
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
    with Load("/flags/bench-rollout", pause=LOAD_PAUSE_SECONDS) as reads, \
            Load("/flags/bench-rollout", token=old_token, pause=LOAD_PAUSE_SECONDS) as writes:
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
    report(rows)


def report(rows: list[Row]) -> None:
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
