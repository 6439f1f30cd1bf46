"""Shared helpers for the repository-level tests: run Ansible's CLIs from the project venv."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# Placeholder credentials for stubbed and emulated AWS clients, and the page moto answers an
# operation it does not implement with.
FAKE_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
HTML_500 = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"


def load_source(relative: str):
    """Import one of the project's plugin files (a module, a filter) by its path under the repository."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.pop("ANSIBLE_INVENTORY", None)
    return env


def module_env(tmp_path: Path) -> dict[str, str]:
    """ansible_env for running one of the project's AWS modules ad hoc with a JSON result: no AWS
    variable, profile or credentials file of this machine's reaches it."""
    env = {name: value for name, value in ansible_env().items() if not name.startswith("AWS_")}
    env.update(
        ANSIBLE_LIBRARY=str(ROOT / "plugins" / "modules"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
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
