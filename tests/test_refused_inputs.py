"""Inputs the roles refuse before they change anything: ports out of 1-65535, an SSH source wider
than a /16, a play that would lock itself out of SSH, and admin SSH keys that are not named public keys.

The host roles run through ansible-playbook in check mode against localhost; each must stop at
its check with the message, having changed nothing. (The provisioning path is tested against a
closed endpoint in molecule/provision/tests/test_validation.py.)
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, ansible_env

RECAP = re.compile(r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_role(tmp_path: Path, role: str, extra: dict, tasks_from: str = "main") -> str:
    """Run one role in check mode on localhost; return its output, asserting it failed and changed nothing."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: {role}\n        tasks_from: {tasks_from}\n"
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "--check", str(play),
         "-e", json.dumps({"ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"), **extra})],
        cwd=ROOT, env={**ansible_env(), "ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{role} accepted {extra}:\n{output[-3000:]}"
    recap = RECAP.search(output)
    assert recap and recap[1] == "0" and recap[3] == "1", output[-3000:]
    return output


@pytest.mark.parametrize("port", [0, 99999, "http"])
def test_postgresql_refuses_a_port_out_of_range(tmp_path, port):
    output = run_role(tmp_path, "postgresql", {"postgresql_port": port, "postgresql_db_password": "not-used"})
    if isinstance(port, int):
        assert f"postgresql_port (db_port in the playbooks) must be a TCP port from 1 to 65535 (got {port})" in output
    else:
        # Not a number at all: the argument spec refuses it first.
        assert "postgresql_port" in output and "int" in output


@pytest.mark.parametrize("proxy", ["10.0.0.0/8; deny all", "lb.example.com"])
def test_reverse_proxy_refuses_a_trusted_proxy_that_is_not_an_address(tmp_path, proxy):
    # Written into nginx's configuration as is: anything but an address or a CIDR is refused first.
    output = run_role(tmp_path, "reverse_proxy", {"reverse_proxy_trusted_proxies": [proxy]}, tasks_from="config")
    assert "reverse_proxy_trusted_proxies a list of addresses or CIDRs" in output


def test_base_refuses_a_play_that_logs_in_as_root_over_ssh(tmp_path):
    # The check runs on the controller before any change, so nothing is ever reached over SSH.
    output = run_role(tmp_path, "base", {"ansible_connection": "ssh", "ansible_user": "root",
                                         "ansible_host": "192.0.2.1"})
    assert "This play logs in with a password or as root" in output


ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkaQxjDIkDydnfHhCbmUvnoRjFj6CJ4sDxOTVxsphr7 alice@laptop"
BOB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcTqJ0u3Ud4Vgtl7FmVh1Cw0ITnOwcMV5hXYG1bLkPb bob@laptop"
# What a pasted private key looks like; its body must never reach the output.
PRIVATE_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWNoT3ZlcnlTZWNyZXQ"
PRIVATE = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PRIVATE_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
KEY_NEEDED = "base_admin_ssh_keys (admin_ssh_keys in the playbooks) entry alice needs key: one OpenSSH public key line"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"base_admin_ssh_keys": [{"name": "alice"}]}, KEY_NEEDED),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": PRIVATE}]}, KEY_NEEDED),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": "ssh-dss AAAAB3NzaC1kc3MAAACBAPd alice@laptop"}]}, KEY_NEEDED),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": f"{ALICE}\n{BOB}"}]}, KEY_NEEDED),
        ({"base_admin_ssh_keys": [{"key": ALICE}]}, "admin_ssh_keys in the playbooks) entry 1 needs a name"),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": ALICE}, {"name": "al ice", "key": BOB}]},
         "admin_ssh_keys in the playbooks) entry 2 needs a name of letters, digits and . _ @ - (got \"al ice\")"),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": ALICE}, {"name": "alice", "key": BOB}]}, "lists the name alice, or its key, twice"),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": ALICE}, {"name": "alice2", "key": ALICE.replace("alice@laptop", "other")}]},
         "lists the name alice2, or its key, twice"),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": ALICE}], "base_admin_user": "root"}, "base_admin_user must be the user the admins log in as"),
        ({"base_admin_ssh_keys": [{"name": "alice", "key": ALICE}], "base_admin_user": ""}, "base_admin_user must be the user the admins log in as"),
    ],
    ids=["key-missing", "private-key", "dsa-key", "two-keys-in-one", "name-missing", "name-with-a-space", "name-twice",
         "key-twice", "user-root", "user-unknown"],
)
def test_base_refuses_admin_keys_it_cannot_install_naming_the_variable(tmp_path, extra, message):
    # Before any change, on the controller: nothing is reached.
    output = run_role(tmp_path, "base", {"base_admin_user": "admin", **extra})
    assert message in output, output[-3000:]
    assert PRIVATE_BODY not in output, "a private key pasted by mistake was shown"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"aws_security_groups_admin_cidr": ["203.0.113.7/32", "10.0.0.0/8"]}, "admin_cidr 10.0.0.0/8 opens SSH to more than a /16"),
        ({"aws_security_groups_admin_cidr": ["203.0.113.7/32", "203.0.113.300/32"]}, "is not a valid IPv4 CIDR"),
        ({"aws_security_groups_admin_cidr": "203.0.113.7/32", "aws_security_groups_web_egress_ports": [443, "x"]},
         "aws_security_groups_web_egress_ports must be TCP ports from 1 to 65535"),
    ],
    ids=["list-with-a-wide-network", "list-with-a-bad-address", "port-not-a-number"],
)
def test_security_group_checks_refuse_before_any_api_call(tmp_path, extra, message):
    tags = {"aws_security_groups_tags": {"Project": "togglemaster", "Environment": "test"}}
    output = run_role(tmp_path, "aws_security_groups", {**tags, **extra}, tasks_from="inputs")
    assert message in output, output[-3000:]


def load_cidr_filters() -> dict:
    spec = importlib.util.spec_from_file_location("cidr", ROOT / "plugins/filter/cidr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


@pytest.mark.parametrize(
    ("value", "wider"),
    [
        ("0.0.0.0/0", ["0.0.0.0/0"]),
        ("0.0.0.0/1", ["0.0.0.0/1"]),
        ("10.0.0.0/15", ["10.0.0.0/15"]),
        ("10.0.0.0/16", []),
        ("203.0.113.7/32", []),
        (["203.0.113.7/32", "10.0.0.0/8"], ["10.0.0.0/8"]),
        ("not-a-cidr", []),
    ],
)
def test_networks_wider_than_a_16_are_found_in_one_cidr_or_a_list(value, wider):
    assert load_cidr_filters()["cidrs_wider_than"](value, 16) == wider
