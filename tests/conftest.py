"""Shared helpers for the repository-level tests: run Ansible's CLIs from the project venv."""

from __future__ import annotations

import json
import os
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
