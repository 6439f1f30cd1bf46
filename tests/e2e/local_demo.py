"""The local demo as its end-to-end tests drive it: its addresses, its playbook runs, HTTPS to it."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, ansible_env

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# Where the local environment publishes HTTPS: the validate role's addresses, from the inventory.
LOCAL_VARS = yaml.safe_load((ROOT / "inventories/local/group_vars/local/main.yml").read_text())
BASE = LOCAL_VARS["validate_base_url"]
PLAIN_BASE = LOCAL_VARS["validate_redirect_url"].rstrip("/")
DOMAIN = LOCAL_VARS["tls_domain"]
STATE = ROOT / ".state/local"
# The local ACME server's root (scripts/local-env.sh up keeps it).
ACME_ROOT = STATE / "acme/root.pem"
KEY = STATE / "ssh/id_ed25519"
SINGLE = ("-i", "inventories/local")
HA = ("-i", "inventories/local", "-i", "inventories/local-ha")
# The Docker network of the local environment's containers (scripts/local-env.sh).
NETWORK = "togglemaster-local"


def sh(*cmd: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env or ansible_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def docker_out(*args: str) -> str:
    """What a docker command prints, stripped; fails on a non-zero exit."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def container_address(name: str) -> str:
    """A container's address on the local environment's network."""
    return docker_out("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}", name)


def recap(output: str) -> dict[str, tuple[int, int, int]]:
    return {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(output)}


@dataclass
class Scenario:
    """The module's one local environment: the stage it has reached and every playbook run's output."""

    stage: str = "up"
    inventory: tuple[str, ...] = SINGLE
    runs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def playbook(self, label: str, name: str, *extra: str, check: bool = True,
                 checkout: Path = ROOT) -> subprocess.CompletedProcess:
        """Run a playbook with -v on the scenario's inventory of a checkout (this one by default); its output
        is kept to be searched for secrets."""
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-v", *self.inventory, f"playbooks/{name}",
                               *extra], cwd=checkout, env={**ansible_env(), "ANSIBLE_CONFIG": str(checkout / "ansible.cfg")},
                              capture_output=True, text=True)
        self.runs[label] = proc
        if check and proc.returncode != 0:
            pytest.fail(f"{label}: {name} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return proc

    def require_live(self) -> None:
        if self.stage != "converged":
            pytest.fail(f"this needs the converged, live environment, but the scenario is at stage '{self.stage}': "
                        "it ran after destroy. Each stage is a fixture; depend on the stage you need.")


def verified() -> ssl.SSLContext:
    """Verifies the chain to the local ACME server's root and the name, like any HTTPS client."""
    return ssl.create_default_context(cafile=str(ACME_ROOT))


def served_certificate() -> dict:
    """The certificate nginx serves on the HTTPS port, as a verifying client sees it."""
    host, port = BASE.removeprefix("https://").rstrip("/").split(":")
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw, \
            verified().wrap_socket(raw, server_hostname=host) as tls:
        return tls.getpeercert()


def get_json(path: str) -> tuple[int, object]:
    with urllib.request.urlopen(BASE + path, timeout=10, context=verified()) as resp:
        return resp.status, json.loads(resp.read())


def send(method: str, path: str, headers: dict[str, str], body: dict | None = None) -> int:
    """The status nginx answers; a refusal (4xx) is an answer too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(req, timeout=10, context=verified()) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@dataclass
class Load:
    """Paced keep-alive requests to the demo's HTTPS address from a few threads until stopped: reads
    (GET path), or with a token writes (PUT path, toggling is_enabled). Counts every failure; a
    refused or dropped connection is one, like any status but 200."""

    path: str
    token: str | None = None
    threads: int = 4
    pause: float = 0.02  # per thread between requests: steady traffic, not a saturation test
    max_seconds: float = 600  # stops by itself even if what it watches hangs
    sent: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _connect(self) -> http.client.HTTPSConnection:
        host, port = BASE.removeprefix("https://").rstrip("/").split(":")
        return http.client.HTTPSConnection(host, int(port), timeout=30, context=verified())

    def _worker(self) -> None:
        conn = self._connect()
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if self.token is None:
                    conn.request("GET", self.path)
                else:
                    conn.request("PUT", self.path, body=json.dumps({"is_enabled": self.sent % 2 == 0}),
                                 headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                ok, detail = resp.status == 200, f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                ok, detail = False, type(exc).__name__
                conn.close()
                conn = self._connect()
            with self._lock:
                self.sent += 1
                if not ok:
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(detail)
            self._stop.wait(self.pause)
        conn.close()

    def __enter__(self) -> "Load":
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.threads)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def __str__(self) -> str:
        return f"{self.failed} of {self.sent} failed" + (f" ({', '.join(self.failures)})" if self.failures else "")
