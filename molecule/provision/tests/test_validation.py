"""A bad value fails with a clear message before any API call is made.

The playbook runs against a closed loopback port: any API call would fail with a connection
error instead of the expected message.
"""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIO_DIR, run_ansible, venv_bin

CLOSED = "http://127.0.0.1:9"
CONNECTION_ERROR = ("Could not connect", "EndpointConnectionError", "Connection refused")


def provision(extra: dict) -> str:
    result = run_ansible(
        [
            venv_bin("ansible-playbook"), "-i", str(SCENARIO_DIR / "inventory"),
            str(SCENARIO_DIR.parent.parent / "playbooks" / "provision.yml"),
            "-e", json.dumps({"aws_endpoint_url": CLOSED, **extra}),
        ],
        extra_env={"AWS_ENDPOINT_URL": CLOSED, "AWS_URL": CLOSED, "AWS_MAX_ATTEMPTS": "1"},
    )
    assert result.returncode != 0, "provisioning with a bad value must fail"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"admin_cidr": "0.0.0.0/0"}, "opens SSH to the whole internet"),
        ({"admin_cidr": ""}, "admin_cidr is required"),
        ({"admin_cidr": "10.0.0.300/32"}, "is not a valid IPv4 CIDR"),
        ({"admin_cidr": "203.0.113.10"}, "is not in CIDR form"),
        ({"aws_network_vpc_cidr": "10.30.0.0/16"}, "not inside the VPC CIDR 10.30.0.0/16"),
        ({"aws_network_vpc_cidr": "10.20.0.0/33"}, "aws_network_vpc_cidr"),
        ({"aws_network_private_subnets": [{"cidr": "10.20.10.0/24", "az": "sa-east-1a"}]}, "at least two distinct availability zones"),
        ({"aws_network_private_subnets": [{"cidr": "10.20.0.0/23", "az": "sa-east-1a"}, {"cidr": "10.20.11.0/24", "az": "sa-east-1c"}]}, "Overlapping subnets"),
        ({"aws_rds_engine_version": "sixteen"}, "aws_rds_engine_version like 16.8"),
    ],
    ids=["ssh-world", "admin-missing", "admin-bad-octet", "admin-no-prefix", "subnet-outside-vpc",
         "vpc-bad-prefix", "one-zone", "overlap", "engine-version"],
)
def test_bad_value_fails_clearly_before_any_api_call(extra, message):
    output = provision(extra)
    assert message in output, output[-3000:]
    assert not any(marker in output for marker in CONNECTION_ERROR), "an API call was made before the check"


def test_ssh_from_anywhere_passes_the_checks_only_with_the_opt_in():
    # Control case: with the opt-in the checks pass and the first API call hits the closed port,
    # which proves the cases above really stopped before the API.
    output = provision({"admin_cidr": "0.0.0.0/0", "aws_security_groups_allow_ssh_from_anywhere": True})
    assert "opens SSH to the whole internet" not in output
    assert any(marker in output for marker in CONNECTION_ERROR), output[-3000:]
