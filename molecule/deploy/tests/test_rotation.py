"""playbooks/rotate.yml under load: a new API token and a new database password for the service's
role, with no failed request; then the end of the switch-over. Readers and a writer that keeps
sending the old token run through nginx the whole time.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from conftest import BASE_URL, WEB, env_file, playbook, recap, secrets, ssm
from test_lifecycle import Load

PROBE = "rotation-probe"


def write(method: str, path: str, token: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{BASE_URL}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {token}", **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Writer:
    """Toggles the probe flag with one token until stopped; every answer but 200 is a failure."""

    def __init__(self, token: str) -> None:
        self.token, self.ok, self.failures = token, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                status = write("PUT", f"/flags/{PROBE}", self.token, {"is_enabled": n % 2 == 0})
            except OSError as exc:
                status = str(exc)
            if status == 200:
                self.ok += 1
            else:
                self.failures.append(status)
            self.stop.wait(0.02)

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=40)
        print(f"  writer with the old token: {self.ok} writes answered 200, {len(self.failures)} failed "
              f"{self.failures[:5]}")


def app_login(password: str) -> bool:
    """Whether the service's role logs in with this password (from the web host, as the service does)."""
    env = env_file()
    script = ("import sys, psycopg2\n"
              "try:\n"
              f"    psycopg2.connect(host={env['DB_HOST']!r}, port={env['DB_PORT']!r}, dbname={env['DB_NAME']!r}, "
              f"user={env['DB_USER']!r}, password=sys.stdin.read(), sslmode='require').close()\n"
              "except psycopg2.OperationalError:\n    sys.exit(1)\n")
    proc = __import__("subprocess").run(["docker", "exec", "-i", WEB, "python3", "-c", script], input=password,
                                        capture_output=True, text=True)
    return proc.returncode == 0


def test_rotation_refuses_without_confirmation():
    before = secrets()
    proc = playbook("rotate.yml")
    assert proc.returncode != 0 and "-e confirm_rotate=molecule" in proc.stdout
    assert secrets() == before


def test_rotation_under_load_drops_nothing_then_the_switch_over_ends():
    old = secrets()
    assert write("PUT", f"/flags/{PROBE}", old["api_token"], {"is_enabled": False}) in (200, 404)
    if write("GET", f"/flags/{PROBE}", old["api_token"]) == 404:
        assert write("POST", "/flags", old["api_token"], {"name": PROBE}) == 201
    assert app_login(old["db_app_password"])

    with Load() as readers, Writer(old["api_token"]) as writer:
        proc = playbook("rotate.yml", "-e", "confirm_rotate=molecule")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert readers.failures == [] and writer.failures == []
    assert writer.ok > 0 and readers.ok > 0

    new = secrets()
    assert new["api_token"] != old["api_token"] and new["db_app_password"] != old["db_app_password"]
    assert new["db_master_password"] == old["db_master_password"]
    assert new["api_token_previous"] == old["api_token"]
    env = env_file()
    assert (env["API_TOKEN"], env["API_TOKEN_PREVIOUS"]) == (new["api_token"], old["api_token"])
    assert env["DB_PASSWORD"] == new["db_app_password"]
    assert app_login(new["db_app_password"]) and not app_login(old["db_app_password"])
    # Both tokens write during the switch-over.
    assert write("PUT", f"/flags/{PROBE}", new["api_token"], {"is_enabled": True}) == 200
    assert write("PUT", f"/flags/{PROBE}", old["api_token"], {"is_enabled": False}) == 200
    runs = json.loads(ssm().get_parameter(Name="/togglemaster/molecule/deploys")["Parameter"]["Value"])
    assert (runs[-1]["action"], runs[-1]["result"]) == ("rotate", "succeeded")

    finish = playbook("rotate.yml", "-e", "confirm_rotate=molecule", "-e", "rotate_finish=true")
    assert finish.returncode == 0, finish.stdout[-3000:]
    assert "API_TOKEN_PREVIOUS" not in env_file()
    assert "api_token_previous" not in secrets()
    assert write("PUT", f"/flags/{PROBE}", old["api_token"], {"is_enabled": True}) == 401
    assert write("PUT", f"/flags/{PROBE}", new["api_token"], {"is_enabled": True}) == 200
    assert secrets()["api_token"] == new["api_token"]

    again = playbook("deploy.yml", "--tags", "release_build,flag_service")
    assert again.returncode == 0 and recap(again.stdout)[WEB][0] == 0, "a deploy after the rotation changed the host"
