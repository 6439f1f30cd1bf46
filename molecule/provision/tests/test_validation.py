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
        ({"admin_cidr": "0.0.0.0/0"}, "opens SSH to more than a /16"),
        ({"admin_cidr": "0.0.0.0/1"}, "admin_cidr 0.0.0.0/1 opens SSH to more than a /16"),
        ({"admin_cidr": "10.0.0.0/15"}, "aws_security_groups_allow_wide_ssh=true"),
        ({"admin_cidr": ""}, "admin_cidr is required"),
        ({"admin_cidr": "10.0.0.300/32"}, "is not a valid IPv4 CIDR"),
        ({"admin_cidr": "203.0.113.10"}, "is not in CIDR form"),
        ({"admin_cidr": ["203.0.113.10/32", "10.0.0.300/32"]}, "admin_cidr: '10.0.0.300/32' is not a valid IPv4 CIDR"),
        ({"admin_cidr": ["203.0.113.10/32", "0.0.0.0/0"]}, "admin_cidr 0.0.0.0/0 opens SSH to more than a /16"),
        ({"admin_cidr": []}, "admin_cidr is required"),
        ({"aws_network_vpc_cidr": "10.30.0.0/16"}, "not inside the VPC CIDR 10.30.0.0/16"),
        ({"aws_network_vpc_cidr": "10.20.0.0/33"}, "aws_network_vpc_cidr"),
        ({"aws_network_zones": ["sa-east-1a", "sa-east-1c"],
          "aws_network_private_subnets": [{"cidr": "10.20.10.0/24", "az": "sa-east-1a"}]}, "each need two availability zones"),
        ({"aws_network_zones": ["sa-east-1a"]}, "each need two availability zones"),
        ({"aws_network_zones": ["us-east-1a", "us-east-1b"]}, "must be zones of sa-east-1"),
        ({"aws_network_private_subnets": [{"cidr": "10.20.0.0/23", "az": "sa-east-1a"}, {"cidr": "10.20.11.0/24", "az": "sa-east-1c"}]}, "Overlapping subnets"),
        ({"aws_rds_engine_version": "sixteen"}, "aws_rds_engine_version must be a major"),
        ({"db_port": 99999}, "aws_security_groups_db_port (db_port by default) must be TCP ports from 1 to 65535 (got 99999)"),
        ({"aws_security_groups_ssh_port": 0}, "aws_security_groups_ssh_port must be TCP ports from 1 to 65535 (got 0)"),
        ({"aws_security_groups_web_public_ports": [80, 65536]}, "aws_security_groups_web_public_ports must be TCP ports"),
        ({"aws_security_groups_web_http_port": 0}, "aws_security_groups_web_http_port must be TCP ports from 1 to 65535 (got 0)"),
        ({"topology": "ha", "env_name": "a-long-environment-name"},
         "aws_load_balancer_name 'togglemaster-a-long-environment-name' (36 characters) must be 1-32"),
        ({"topology": "ha", "aws_load_balancer_certificate_content": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"},
         "aws_load_balancer_certificate_content and aws_load_balancer_certificate_key_content go together"),
    ],
    ids=["ssh-world", "ssh-half-the-world", "ssh-wider-than-16", "admin-missing", "admin-bad-octet", "admin-no-prefix",
         "admin-list-bad-octet", "admin-list-world", "admin-list-empty", "subnet-outside-vpc",
         "vpc-bad-prefix", "one-zone", "one-zone-listed", "zone-of-another-region", "overlap", "engine-version",
         "db-port-too-high", "ssh-port-zero", "public-port-too-high", "web-http-port-zero", "ha-name-too-long",
         "ha-certificate-without-key"],
)
def test_bad_value_fails_clearly_before_any_api_call(extra, message):
    output = provision(extra)
    assert message in output, output[-3000:]
    assert not any(marker in output for marker in CONNECTION_ERROR), "an API call was made before the check"


@pytest.mark.parametrize(
    "extra",
    [
        {"admin_cidr": "0.0.0.0/0", "aws_security_groups_allow_wide_ssh": True},
        {"admin_cidr": "10.0.0.0/16"},
        {"admin_cidr": ["203.0.113.10/32", "198.51.100.4/32"]},
    ],
    ids=["world-with-opt-in", "a-16-without-opt-in", "a-list-of-two"],
)
def test_ssh_source_passes_the_checks_when_opted_in_or_no_wider_than_a_16(extra):
    # Control cases: the checks pass and the first API call hits the closed port, which proves
    # the cases above really stopped before the API.
    output = provision(extra)
    assert "opens SSH to more than a /16" not in output
    assert any(marker in output for marker in CONNECTION_ERROR), output[-3000:]
