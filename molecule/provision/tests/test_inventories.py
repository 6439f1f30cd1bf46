"""What each environment's inventory says about AWS, read the way ansible-playbook reads it."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_DIR, run_ansible, venv_bin


def resolved(env: str, variable: str):
    result = run_ansible([
        venv_bin("ansible"), "localhost", "-i", str(REPO_DIR / "inventories" / env),
        "-m", "ansible.builtin.debug", "-a", f"var={variable}", "-o",
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])[variable]


def is_undefined(value) -> bool:
    return "NOT DEFINED" in str(value) or "is undefined" in str(value)


def test_production_database_has_deletion_protection():
    assert resolved("production", "aws_rds_deletion_protection") is True


@pytest.mark.parametrize("env", ["staging", "production"])
def test_real_environments_talk_to_the_real_endpoint_without_emulator_settings(env):
    assert resolved(env, "aws_endpoint_url") == ""
    assert is_undefined(resolved(env, "aws_rds_storage_throughput"))


@pytest.mark.parametrize("env", ["staging", "production"])
def test_real_environments_open_ssh_to_nobody_by_default(env):
    assert is_undefined(resolved(env, "admin_cidr"))
