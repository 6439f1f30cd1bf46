"""What the control-node tests share: playbook runs against the scenario's inventory (each one
checked for the scenario's secrets), the PLAY RECAP, the secrets themselves, and commands on
the web container.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
# state_dir of the scenario (inventory/group_vars/molecule.yml): playbooks/group_vars/all/database.yml
# generates the database password and the API token there on first use.
STATE_DIR = EPHEMERAL / "state"
SECRET_FILES = ("db_password", "api_token")
# nginx on the web container, published by molecule.yml: the validate role's address.
BASE_URL = yaml.safe_load((REPO / "molecule/deploy/inventory/group_vars/molecule.yml").read_text())["validate_base_url"]
WEB = "tm-deploy-web"
DB = "tm-deploy-db"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def secrets() -> dict[str, str]:
    """The scenario's secrets by file name, as the lookups read them (the value is the first word)."""
    __tracebackhide__ = True
    found = {}
    for name in SECRET_FILES:
        words = (STATE_DIR / name).read_text(encoding="utf-8").split()
        generated = bool(words) and len(words[0]) >= 32
        assert generated, f"{STATE_DIR / name} holds no generated secret"
        found[name] = words[0]
    return found


def assert_no_secret(where: str, text: str) -> None:
    """Fails naming the secret and the line, with the value masked (pytest would show the operands
    of a comparison that fails, so none is compared inside an assert; nor the arguments of this frame)."""
    __tracebackhide__ = True
    for name, value in secrets().items():
        leaked = [number for number, line in enumerate(text.splitlines(), 1) if value in line]
        line = text.splitlines()[leaked[0] - 1].replace(value, "***")[:300] if leaked else ""
        assert not leaked, f"{where}: the {name} is printed on line(s) {leaked[:10]}: {line}"


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook -v against the scenario's hosts; neither stdout nor stderr may hold a secret."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_PIPELINING="true",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [ANSIBLE_PLAYBOOK, "-v", "-i", str(INVENTORY), str(REPO / "playbooks" / name), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    print(f"\n$ {' '.join(cmd[1:])}\n  rc={proc.returncode} in {time.monotonic() - started:.0f}s")
    # A run that printed nothing would pass the secret check without proving anything.
    assert "PLAY RECAP" in proc.stdout, f"{name} did not run:\n{proc.stderr[-2000:]}"
    assert_no_secret(f"{name} {' '.join(args)}: stdout", proc.stdout)
    assert_no_secret(f"{name} {' '.join(args)}: stderr", proc.stderr)
    return proc


def recap(output: str) -> dict[str, tuple[int, int, int]]:
    """PLAY RECAP per host: (changed, unreachable, failed)."""
    return {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(output)}


def on_host(container: str, command: str) -> str:
    """A shell command on a scenario container (as root, through docker exec); it must succeed."""
    proc = subprocess.run(["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True)
    assert proc.returncode == 0, f"{container}: {command} exited {proc.returncode}: {proc.stderr[-1000:]}"
    return proc.stdout


def live_build() -> str:
    with urllib.request.urlopen(f"{BASE_URL}/health", timeout=10) as resp:
        return json.load(resp)["build"]
