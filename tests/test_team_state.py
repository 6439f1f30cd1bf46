"""Team state in AWS: the secrets in SSM Parameter Store and the environment's lock.

Every test runs the project's roles through a real playbook against an emulated AWS API of the
module's own (moto), each under an environment name of its own, so the parameters of one test
never meet another's.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from conftest import BIN, ROOT, ansible_env

SECRETS = {"db_master_password", "db_app_password", "api_token"}


def playbook(endpoint: str, env_name: str, path: Path, *extra: str, state_dir: Path | None = None,
             background: bool = False):
    """Run a playbook on the local inventory, pointed at the test's emulator and environment name."""
    cmd = [str(BIN / "ansible-playbook"), "-v", "-i", str(ROOT / "inventories" / "local"), str(path),
           "-e", f"aws_endpoint_url={endpoint}", "-e", f"env_name={env_name}", *extra]
    if state_dir is not None:
        cmd += ["-e", f"state_dir={state_dir}"]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=300)


def ssm(endpoint: str):
    return boto3.client("ssm", region_name="sa-east-1", endpoint_url=endpoint,
                        aws_access_key_id="emulated", aws_secret_access_key="emulated")


def stored_secrets(endpoint: str, env_name: str) -> dict[str, dict]:
    pages = ssm(endpoint).get_parameters_by_path(Path=f"/togglemaster/{env_name}/secrets", WithDecryption=True)
    return {p["Name"].rsplit("/", 1)[1]: p for p in pages["Parameters"]}


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("localhost ") and "ok=" in line)
    return {key: int(value) for key, value in (part.split("=") for part in line.split()[2:])}


HOLD = ROOT / "tests" / "playbooks" / "hold_lock.yml"
DISCOVER = ROOT / "playbooks" / "discover.yml"


def test_secrets_are_created_once_and_a_fresh_checkout_reads_the_same(moto_endpoint, tmp_path):
    first = playbook(moto_endpoint, "secrets1", DISCOVER, state_dir=tmp_path / "laptop-a")
    assert first.returncode == 0, first.stdout + first.stderr
    created = stored_secrets(moto_endpoint, "secrets1")
    assert set(created) == SECRETS
    assert {p["Type"] for p in created.values()} == {"SecureString"}
    assert len(created["api_token"]["Value"]) == 40 and len(created["db_master_password"]["Value"]) == 32

    # A teammate: another state folder (nothing in it), the same AWS.
    second = playbook(moto_endpoint, "secrets1", DISCOVER, state_dir=tmp_path / "laptop-b")
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second.stdout)["changed"] == 0
    again = stored_secrets(moto_endpoint, "secrets1")
    assert {k: p["Value"] for k, p in again.items()} == {k: p["Value"] for k, p in created.items()}
    assert {p["Version"] for p in again.values()} == {1}

    for run in (first, second):
        for secret in created.values():
            assert secret["Value"] not in run.stdout + run.stderr
    for laptop in ("laptop-a", "laptop-b"):
        folder = tmp_path / laptop
        written = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        assert not any(s["Value"] in p.read_text(errors="ignore") for p in written for s in created.values())


def test_a_secret_put_beforehand_is_kept(moto_endpoint, tmp_path):
    own = "BroughtByTheTeam0123456789abcdef"
    ssm(moto_endpoint).put_parameter(Name="/togglemaster/secrets2/secrets/api_token", Value=own, Type="SecureString")
    run = playbook(moto_endpoint, "secrets2", DISCOVER, state_dir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    stored = stored_secrets(moto_endpoint, "secrets2")
    assert stored["api_token"]["Value"] == own
    assert set(stored) == SECRETS


def lock_value(endpoint: str, env_name: str) -> dict | None:
    try:
        return json.loads(ssm(endpoint).get_parameter(Name=f"/togglemaster/{env_name}/lock")["Parameter"]["Value"])
    except ssm(endpoint).exceptions.ParameterNotFound:
        return None


def record(endpoint: str, env_name: str) -> list[dict]:
    try:
        value = ssm(endpoint).get_parameter(Name=f"/togglemaster/{env_name}/deploys")["Parameter"]["Value"]
    except ssm(endpoint).exceptions.ParameterNotFound:
        return []
    return json.loads(value)


def test_of_two_concurrent_runs_the_second_is_refused_naming_the_holder(moto_endpoint):
    holder = playbook(moto_endpoint, "lock1", HOLD, "-e", "hold=25", background=True)
    try:
        deadline = time.monotonic() + 60
        while lock_value(moto_endpoint, "lock1") is None:
            assert holder.poll() is None, holder.stdout.read()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.5)
        held = lock_value(moto_endpoint, "lock1")

        started = time.monotonic()
        second = playbook(moto_endpoint, "lock1", HOLD)
        refused_after = time.monotonic() - started
        assert second.returncode != 0
        assert f"lock1 is locked by {held['who']} ({held['caller']}) since {held['since']}" in second.stdout
        assert "deploy test-release" in second.stdout and "-e break_lock=lock1" in second.stdout
        assert holder.poll() is None, "the first run had ended: the refusal proves nothing"
        assert lock_value(moto_endpoint, "lock1")["run_id"] == held["run_id"]
        print(f"refused after {refused_after:.1f} s")
    finally:
        output, _ = holder.communicate(timeout=120)
    assert holder.returncode == 0, output
    assert lock_value(moto_endpoint, "lock1") is None
    runs = record(moto_endpoint, "lock1")
    assert [(r["run_id"], r["result"], r["action"], r["release"]) for r in runs] == [
        (held["run_id"], "succeeded", "deploy", "test-release")]


def test_a_failed_run_releases_its_lock_and_records_the_failure(moto_endpoint):
    run = playbook(moto_endpoint, "lock2", HOLD, "-e", "fail_run=true")
    assert run.returncode != 0 and "this run fails on purpose" in run.stdout
    assert "deploy lock /togglemaster/lock2/lock released (deploy failed)" in run.stdout
    assert lock_value(moto_endpoint, "lock2") is None
    assert [(r["result"], r["failed_hosts"]) for r in record(moto_endpoint, "lock2")] == [("failed", ["localhost"])]

    after = playbook(moto_endpoint, "lock2", HOLD)
    assert after.returncode == 0, after.stdout
    assert [r["result"] for r in record(moto_endpoint, "lock2")] == ["failed", "succeeded"]


def put_lock(endpoint: str, env_name: str, age_seconds: int) -> dict:
    since = int(time.time()) - age_seconds
    value = {"run_id": f"dead{age_seconds}", "who": "ana@laptop", "caller": "arn:aws:iam::123456789012:user/ana",
             "action": "deploy", "release": "r-old", "hosts": ["web-1"], "since_epoch": since,
             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))}
    ssm(endpoint).put_parameter(Name=f"/togglemaster/{env_name}/lock", Value=json.dumps(value), Type="String",
                                Overwrite=True)
    return value


@pytest.mark.parametrize("age, break_lock, broken", [
    (3 * 3600, None, False),      # stale, but nobody asked
    (3 * 3600, "other-env", False),  # asked for another environment
    (600, "lock3", False),        # asked, but younger than deploy_lock_stale_after (2 h)
    (3 * 3600, "lock3", True),    # stale and asked by name
])
def test_a_stale_lock_is_broken_only_when_asked_by_name(moto_endpoint, age, break_lock, broken):
    dead = put_lock(moto_endpoint, "lock3", age)
    run = playbook(moto_endpoint, "lock3", HOLD, *(["-e", f"break_lock={break_lock}"] if break_lock else []))
    if broken:
        assert run.returncode == 0, run.stdout
        assert "Broke the stale lock of ana@laptop" in run.stdout
        assert lock_value(moto_endpoint, "lock3") is None
    else:
        assert run.returncode != 0
        assert "locked by ana@laptop (arn:aws:iam::123456789012:user/ana)" in run.stdout
        assert lock_value(moto_endpoint, "lock3") == dead
    ssm(moto_endpoint).delete_parameters(Names=["/togglemaster/lock3/lock"])
