"""The base role's admin keys on the web host: each listed admin logs in as admin with their own key;
a key taken off the list can no longer log in, and the key the role did not install (the stand-in
for the EC2 key pair's, authorized by prepare.yml) stays, whatever the list says.

converge.yml lists alice and bob; the tests that change the list put both back when they are done,
so verify can run again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

testinfra_hosts = ["tm-platform-web"]

REPO = Path(__file__).resolve().parents[3]
KEYS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "admin_keys"
AUTHORIZED_KEYS = "/home/admin/.ssh/authorized_keys"
BEGIN = "# BEGIN admin keys managed by Ansible (base_admin_ssh_keys)"
END = "# END admin keys managed by Ansible (base_admin_ssh_keys)"
RECAP = re.compile(r"^tm-platform-web\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.M)


def public(name: str) -> str:
    return (KEYS / f"{name}.pub").read_text(encoding="utf-8").strip()


def managed_line(name: str) -> str:
    kind, body = public(name).split()[:2]
    return f"{kind} {body} togglemaster-admin:{name}"


def admins(*names: str) -> list[dict[str, str]]:
    return [{"name": name, "key": public(name)} for name in names]


def converge_admin_keys(tmp_path: Path, keys: list[dict[str, str]]) -> int:
    """Run the base role's admin-key phase on the web host with this list; return its changed count."""
    playbook = tmp_path / "admin_keys.yml"
    playbook.write_text(
        "- hosts: tm-platform-web\n  gather_facts: false\n  roles:\n    - role: base\n"
        f"      vars:\n        base_admin_ssh_keys: {json.dumps(keys)}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
           "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         str(playbook), "--tags", "base_admin_keys"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    recap = RECAP.search(output)
    assert result.returncode == 0 and recap, output[-3000:]
    return int(recap[1])


def logs_in(address: str, name: str) -> bool:
    """Whether ssh admin@address with only this test key (no agent, no config) gets a shell."""
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(KEYS / name), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"admin@{address}", "id -un"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 or "Permission denied (publickey)" in result.stderr, result.stderr
    return result.returncode == 0 and result.stdout.strip() == "admin"


@pytest.fixture(scope="module")
def address(host) -> str:
    return host.interface("eth0").addresses[0]


@pytest.fixture
def puts_both_admins_back(tmp_path):
    yield
    converge_admin_keys(tmp_path, admins("alice", "bob"))


def test_each_listed_admin_logs_in_as_admin_with_their_own_key(address):
    assert logs_in(address, "alice")
    assert logs_in(address, "bob")
    assert logs_in(address, "ec2"), "the key the role did not install must still work"


def test_admin_keys_are_one_marked_block_after_the_keys_already_there(host):
    authorized = host.file(AUTHORIZED_KEYS)
    assert (authorized.user, authorized.group, authorized.mode) == ("admin", "admin", 0o600)
    folder = host.file("/home/admin/.ssh")
    assert (folder.user, folder.mode) == ("admin", 0o700)
    assert authorized.content_string.splitlines() == [
        public("ec2"), BEGIN, managed_line("alice"), managed_line("bob"), END,
    ]


def test_a_key_taken_off_the_list_can_no_longer_log_in(host, address, tmp_path, puts_both_admins_back):
    assert converge_admin_keys(tmp_path, admins("alice")) == 1
    assert not logs_in(address, "bob")
    assert logs_in(address, "alice")
    assert logs_in(address, "ec2")
    assert host.file(AUTHORIZED_KEYS).content_string.splitlines() == [public("ec2"), BEGIN, managed_line("alice"), END]
    assert converge_admin_keys(tmp_path, admins("alice")) == 0, "the same list again must change nothing"


def test_an_empty_list_leaves_the_file_as_it_was_before_the_role(host, address, tmp_path, puts_both_admins_back):
    assert converge_admin_keys(tmp_path, []) == 1
    assert host.file(AUTHORIZED_KEYS).content_string == public("ec2") + "\n"
    assert not logs_in(address, "alice")
    assert logs_in(address, "ec2")
    assert converge_admin_keys(tmp_path, []) == 0, "no block, nothing to do"
