"""The test configuration can never reach the real AWS endpoint.

These checks read the scenario's own configuration; removing the endpoint or the fake
credentials from it makes them fail.
"""

from __future__ import annotations

import re

import boto3
import pytest

from conftest import GROUP_VARS, SCENARIO_DIR, is_loopback_url, load_yaml, run_ansible, scenario_env, venv_bin

REAL_KEY_ID = re.compile(r"^(AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}$")


def test_every_aws_client_of_the_scenario_is_pointed_at_loopback():
    env = scenario_env()
    for name in ("AWS_ENDPOINT_URL", "AWS_URL"):
        assert name in env, f"molecule.yml must set {name}"
        assert is_loopback_url(env[name]), f"{name}={env[name]} is not on loopback"


def test_anything_not_on_loopback_would_hit_a_closed_proxy_on_loopback():
    env = scenario_env()
    assert is_loopback_url(env["HTTPS_PROXY"]) and is_loopback_url(env["HTTP_PROXY"])
    assert set(env["NO_PROXY"].split(",")) <= {"127.0.0.1", "localhost"}


def test_scenario_credentials_are_fake_and_no_credential_file_is_read():
    env = scenario_env()
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert not REAL_KEY_ID.match(env["AWS_ACCESS_KEY_ID"])
    assert env["AWS_CONFIG_FILE"] == "/dev/null"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"


def test_inventory_endpoint_variable_is_loopback_in_the_file():
    assert is_loopback_url(load_yaml(GROUP_VARS)["aws_endpoint_url"])


def test_inventory_endpoint_variable_resolves_to_loopback_for_ansible():
    result = run_ansible([
        venv_bin("ansible"), "localhost", "-i", str(SCENARIO_DIR / "inventory"),
        "-m", "ansible.builtin.debug", "-a", "var=aws_endpoint_url",
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r'"aws_endpoint_url": "([^"]*)"', result.stdout)
    assert match, result.stdout
    assert is_loopback_url(match.group(1)), f"resolved endpoint {match.group(1)!r} is not on loopback"


def test_boto3_under_the_scenario_environment_resolves_to_loopback(monkeypatch):
    for key, value in scenario_env().items():
        monkeypatch.setenv(key, value)
    for service in ("ec2", "rds"):
        assert is_loopback_url(boto3.client(service).meta.endpoint_url)


@pytest.mark.parametrize("endpoint", ["", "http://127.0.0.2:9"])
def test_converge_refuses_any_endpoint_but_the_emulator(endpoint):
    # If the guard ever broke, "" still falls back to the loopback AWS_ENDPOINT_URL and
    # 127.0.0.2:9 is loopback too: this test itself cannot reach AWS.
    result = run_ansible([
        venv_bin("ansible-playbook"), "-i", str(SCENARIO_DIR / "inventory"),
        str(SCENARIO_DIR / "converge.yml"), "--check", "-e", f"aws_endpoint_url={endpoint}",
    ])
    assert result.returncode != 0
    assert "must only ever talk to the emulated API" in result.stdout + result.stderr
