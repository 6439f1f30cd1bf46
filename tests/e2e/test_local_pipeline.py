"""The local demo, end to end: the same site.yml that staging and production run.

Brings up the local environment (emulated AWS API + systemd containers), runs site.yml
(provision, configure, deploy, validate), re-runs it expecting no change, calls the API through
nginx, runs site.yml and destroy.yml in check mode, checks the hosts over SSH as an operator would
(admin with sudo gets in, root does not, sshd's settings, log file modes), checks that destroy
refuses without confirmation, then destroys and tears down.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest

from conftest import BIN, ROOT, ansible_env

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
BASE = "http://127.0.0.1:8080"
KEY = ROOT / ".state/local/ssh/id_ed25519"
SSH_PORTS = {"tm-local-web": 2222, "tm-local-db": 2223}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def playbook(name: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(str(BIN / "ansible-playbook"), "-i", "inventories/local", f"playbooks/{name}", *extra, check=check)


def recap(output: str) -> dict[str, tuple[int, int, int]]:
    return {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(output)}


def ssh(user: str, host: str, *command: str) -> subprocess.CompletedProcess:
    """Run a command on a local host over SSH on loopback with the generated key, as an operator would."""
    return subprocess.run(
        ["ssh", "-i", str(KEY), "-p", str(SSH_PORTS[host]), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
         f"{user}@127.0.0.1", *command],
        capture_output=True, text=True, timeout=60,
    )


def as_admin(host: str, command: str) -> str:
    proc = ssh("admin", host, command)
    assert proc.returncode == 0, f"{host}: {command} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def get_json(path: str) -> tuple[int, object]:
    with urllib.request.urlopen(BASE + path, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def local_environment():
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", "tm-local-web"],
                             capture_output=True, text=True).stdout.strip()
    if running == "true":
        pytest.fail("a local demo is running; this test replaces it. Tear it down first: make demo-down")
    sh("bash", "scripts/local-env.sh", "up")
    try:
        yield
    finally:
        sh("bash", "scripts/local-env.sh", "down", check=False)


@pytest.fixture(scope="module")
def first_run(local_environment):
    proc = playbook("site.yml")
    return recap(proc.stdout)


def test_site_converges_every_host(first_run):
    assert set(first_run) == {"localhost", "tm-local-web", "tm-local-db"}
    assert all(failed == 0 and unreachable == 0 for _, unreachable, failed in first_run.values())


def test_the_service_answers_through_nginx(first_run):
    status, body = get_json("/health")
    assert status == 200 and body["status"] == "ok"
    status, _ = get_json("/ready")
    assert status == 200
    status, flags = get_json("/flags")
    assert status == 200 and isinstance(flags, list)


def test_second_run_changes_nothing(first_run):
    proc = playbook("site.yml")
    changed = {host: counts[0] for host, counts in recap(proc.stdout).items()}
    assert changed and all(count == 0 for count in changed.values()), f"changed on re-run: {changed}"


def test_check_mode_on_the_converged_environment_reports_no_change(first_run):
    proc = playbook("site.yml", "--check", "--diff")
    counts = recap(proc.stdout)
    assert counts and all(failed == 0 for _, _, failed in counts.values()), f"failed in check mode: {counts}"
    changed = {host: count[0] for host, count in counts.items()}
    assert all(count == 0 for count in changed.values()), f"changed in check mode: {changed}"
    proc = playbook("validate.yml", "--check", "--diff")
    assert "write steps were skipped in check mode" in proc.stdout


def test_validate_playbook_passes_on_the_live_service(first_run):
    playbook("validate.yml")


@pytest.mark.parametrize("host", SSH_PORTS)
def test_admin_logs_in_with_the_key_and_escalates_without_a_password(first_run, host):
    assert as_admin(host, "sudo -n id -un").strip() == "root"


@pytest.mark.parametrize("host", SSH_PORTS)
def test_root_cannot_log_in_over_ssh_even_with_the_key(first_run, host):
    # root is given the very key admin logs in with, so only sshd's PermitRootLogin can refuse it.
    subprocess.run(["docker", "exec", host, "sh", "-c",
                    "install -d -m 0700 /root/.ssh && install -m 0600 /home/admin/.ssh/authorized_keys /root/.ssh/"],
                   check=True)
    try:
        proc = ssh("root", host, "true")
    finally:
        subprocess.run(["docker", "exec", host, "rm", "-f", "/root/.ssh/authorized_keys"], check=True)
    assert proc.returncode == 255, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stderr


@pytest.mark.parametrize("host", SSH_PORTS)
def test_sshd_runs_keys_only_no_root_no_forwarding_three_tries(first_run, host):
    settings = dict(line.split(" ", 1) for line in as_admin(host, "sudo -n sshd -T").splitlines() if " " in line)
    assert {name: settings[name] for name in (
        "permitrootlogin", "passwordauthentication", "kbdinteractiveauthentication", "allowagentforwarding",
        "allowtcpforwarding", "x11forwarding", "maxauthtries")} == {
        "permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "allowagentforwarding": "no", "allowtcpforwarding": "no", "x11forwarding": "no", "maxauthtries": "3"}


@pytest.mark.parametrize("host", SSH_PORTS)
def test_logs_of_the_platform_roles_are_readable_by_the_adm_group_only(first_run, host):
    paths = ["/var/log/unattended-upgrades/unattended-upgrades.log",
             "/var/log/unattended-upgrades/unattended-upgrades-dpkg.log",
             "/var/log/unattended-upgrades/unattended-upgrades-shutdown.log"]
    expected = {"/var/log/unattended-upgrades": "750 root adm", **{path: "640 root adm" for path in paths}}
    if host == "tm-local-db":
        expected["/var/log/postgresql/postgresql-15-main.log"] = "640 postgres adm"
    out = as_admin(host, "sudo -n stat -c '%n %a %U %G' " + " ".join(expected))
    assert dict(line.split(" ", 1) for line in out.splitlines()) == expected


def test_destroy_refuses_without_confirmation(first_run):
    proc = playbook("destroy.yml", check=False)
    assert proc.returncode != 0
    assert "confirm_destroy=local" in proc.stdout + proc.stderr


def test_destroy_in_check_mode_reports_no_errors(first_run):
    playbook("destroy.yml", "--check", "--diff", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true")
    assert (ROOT / ".state/local/outputs.yml").exists(), "check mode removed the outputs file"


def test_destroy_removes_the_emulated_stack(first_run):
    playbook("destroy.yml", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true")
    assert not (ROOT / ".state/local/outputs.yml").exists()
