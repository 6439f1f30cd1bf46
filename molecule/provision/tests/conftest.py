"""Shared fixtures: boto3 clients that can only reach the emulated API, and the scenario's settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SCENARIO_DIR.parent.parent
GROUP_VARS = SCENARIO_DIR / "inventory" / "group_vars" / "staging" / "main.yml"
STATE_DIR = REPO_DIR / ".state" / "molecule-provision"
PROJECT = "togglemaster"
ENVIRONMENT = "staging"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def scenario_env() -> dict[str, str]:
    """The environment molecule gives every process of the scenario (molecule.yml ansible.env)."""
    raw = load_yaml(SCENARIO_DIR / "molecule.yml")["ansible"]["env"]
    return {
        key: str(value).replace("${MOLECULE_PROJECT_DIRECTORY}", str(REPO_DIR))
        for key, value in raw.items()
    }


def is_loopback_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"http", "https"} and parsed.hostname in LOOPBACK_HOSTS


@pytest.fixture(scope="session")
def endpoint() -> str:
    """The emulated endpoint, refused unless it is on loopback (no test ever reaches AWS)."""
    url = scenario_env()["AWS_ENDPOINT_URL"]
    assert is_loopback_url(url), f"refusing to test against a non-loopback endpoint: {url}"
    return url


@pytest.fixture(scope="session")
def aws(endpoint: str):
    """A factory of boto3 clients bound to the emulated endpoint and the fake credentials."""
    env = scenario_env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
        region_name=env["AWS_REGION"],
    )

    def client(service: str):
        made = session.client(service, endpoint_url=endpoint)
        assert is_loopback_url(made.meta.endpoint_url)
        return made

    return client


@pytest.fixture(scope="session")
def env_filters() -> list[dict]:
    return [
        {"Name": "tag:Project", "Values": [PROJECT]},
        {"Name": "tag:Environment", "Values": [ENVIRONMENT]},
    ]


@pytest.fixture(scope="session")
def group_vars() -> dict:
    return load_yaml(GROUP_VARS)


def run_ansible(args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an ansible command line from the repository root with the scenario's environment."""
    env = {**os.environ, **scenario_env(), "ANSIBLE_FORCE_COLOR": "0", **(extra_env or {})}
    env["MOLECULE_PROJECT_DIRECTORY"] = str(REPO_DIR)
    return subprocess.run(args, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600, check=False)


def venv_bin(name: str) -> str:
    return str(Path(os.sys.executable).parent / name)


# A security group's rules as (protocol, from port, to port, source) tuples, the way the tests compare them.
def ingress(group: dict) -> set[tuple]:
    return {
        (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), source)
        for p in group["IpPermissions"]
        for source in [r["CidrIp"] for r in p.get("IpRanges", [])]
        + [g["GroupId"] for g in p.get("UserIdGroupPairs", [])]
        + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
    }


def egress(group: dict) -> set[tuple]:
    return ingress({"IpPermissions": group["IpPermissionsEgress"]})
