"""Shared helpers for the repository-level tests: run Ansible's CLIs from the project venv."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.pop("ANSIBLE_INVENTORY", None)
    return env


@pytest.fixture
def host_vars():
    """Return the variables Ansible resolves for a host in an environment's inventory."""

    def resolve(environment: str, host: str, extra_inventory: Path | None = None) -> dict:
        cmd = [str(BIN / "ansible-inventory"), "-i", str(ROOT / "inventories" / environment / "hosts.yml")]
        if extra_inventory is not None:
            cmd += ["-i", str(extra_inventory)]
        cmd += ["--playbook-dir", str(ROOT / "playbooks"), "--host", host]
        out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    return resolve


def free_port() -> int:
    """A TCP port nothing listens on yet, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    """An emulated AWS API of this module's own (moto, in this process) on a free loopback port.
    moto keeps its resources in the process, not in the server: they are reset when the module
    ends, so the next module starts from an empty account."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    server.stop()
