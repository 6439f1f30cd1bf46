"""The local demo, end to end: the same site.yml that staging and production run.

One scenario, in this order, each stage a module fixture that needs the one before it (so the
order holds whichever tests are selected, and a test that needs the live environment fails
clearly if it runs after destroy):

1. up: the local environment (emulated AWS API + systemd containers);
2. converged: site.yml (provision, configure, deploy, validate); then, on the live environment,
   a no-op re-run, site.yml and validate.yml in check mode, validate.yml, the API through nginx,
   the hosts over SSH as an operator would, and requests carrying marker strings;
3. a teammate: a second checkout with no .state/ and a key of its own (listed in admin_ssh_keys)
   deploys while this checkout's deploy holds the environment's lock (refused at once, naming
   the holder), then again (nothing changes on the hosts, the same secrets), then status.yml;
4. destroyed: destroy.yml without confirmation (refused), in check mode, then for real, with
   what the emulated API holds for the environment before and after;
5. the hosts' logs read; then `scripts/local-env.sh down` with a docker that cannot remove
   (it must stop and say what), and twice for real.

Every playbook runs with -v; neither the generated secrets nor the markers may appear in any
playbook's output or in the hosts' logs.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, ansible_env
from emulated_aws import KINDS, clients, tagged_resources, undrawn
from local_demo import (BASE, DOMAIN, KEY, NETWORK, PLAIN_BASE, STATE, Scenario, container_address, get_json, recap, send,
                        served_certificate, sh)

ACME_DNS_API = "http://127.0.0.1:8055"
ACME_DAEMONS = ("pebble", "pebble-challtestsrv")
SSH_PORTS = {"tm-local-web": 2222, "tm-local-db": 2223}
CONTAINERS = tuple(SSH_PORTS)
MOTO_PORT = 5050
DESTROY = ("destroy.yml", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true")
# Where the local environment keeps its state in the emulated SSM Parameter Store (ssm_path).
SSM_PATH = "/togglemaster/local"


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


def resolved(expression: str):
    """A Jinja expression evaluated with the local inventory's variables, as the control node sees them."""
    # Only the JSON callback: ansible.cfg's profile_tasks would print its timings around the JSON.
    env = {**ansible_env(), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json"}
    proc = sh(str(BIN / "ansible"), "localhost", "-i", "inventories/local", "-m", "ansible.builtin.debug",
              "-a", f"msg={{{{ {expression} }}}}", env=env)
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


def container_exists(name: str) -> bool:
    return subprocess.run(["docker", "container", "inspect", name], capture_output=True).returncode == 0


def network_exists(name: str) -> bool:
    return subprocess.run(["docker", "network", "inspect", name], capture_output=True).returncode == 0


def is_moto(pid: int) -> bool:
    """The process is alive and still the emulator (an exited, unreaped process has no command line)."""
    try:
        return b"moto_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def is_running(pid: int, program: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(program.encode())
    except OSError:
        return False


def what_exists(moto_pid: int, acme_pids: dict[str, int]) -> dict[str, bool]:
    return {
        **{f"container {name}": container_exists(name) for name in CONTAINERS},
        **{f"{daemon} pid {pid}": is_running(pid, daemon) for daemon, pid in acme_pids.items()},
        f"network {NETWORK}": network_exists(NETWORK),
        f"emulator pid {moto_pid}": is_moto(moto_pid),
        f"listener on 127.0.0.1:{MOTO_PORT}": port_open(MOTO_PORT),
        ".state/local": STATE.exists(),
    }


# --- the scenario's stages, in order ------------------------------------------------------


@pytest.fixture(scope="module")
def scenario():
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", "tm-local-web"],
                             capture_output=True, text=True).stdout.strip()
    if running == "true":
        pytest.fail("a local demo is running; this test replaces it. Tear it down first: make demo-down")
    sh("bash", "scripts/local-env.sh", "up")
    try:
        yield Scenario()
    finally:
        sh("bash", "scripts/local-env.sh", "down", check=False)


@pytest.fixture(scope="module")
def emulator():
    """Lists what the emulated AWS API holds for the local environment, by its Project and Environment tags."""
    aws = resolved("{'endpoint': aws_endpoint_url, 'region': aws_region, 'key': aws_access_key, "
                   "'secret': aws_secret_key, 'tags': common_tags}")
    ec2, rds = clients(aws["endpoint"], aws["region"], aws["key"], aws["secret"])
    tags = {name: aws["tags"][name] for name in ("Project", "Environment")}
    assert tags == {"Project": "togglemaster", "Environment": "local"}
    return lambda: tagged_resources(ec2, rds, tags)


@pytest.fixture(scope="module")
def ssm():
    """The emulated SSM Parameter Store the local environment keeps its outputs, secrets and lock in."""
    aws = resolved("{'endpoint': aws_endpoint_url, 'region': aws_region, 'key': aws_access_key, "
                   "'secret': aws_secret_key, 'path': ssm_path}")
    assert aws["path"] == SSM_PATH and aws["endpoint"].startswith("http://127.0.0.1:")
    import boto3
    return boto3.client("ssm", endpoint_url=aws["endpoint"], region_name=aws["region"],
                        aws_access_key_id=aws["key"], aws_secret_access_key=aws["secret"])


def parameters(ssm) -> dict[str, str]:
    """Every parameter of the local environment: name -> value, decrypted."""
    found, token = {}, None
    while True:
        page = ssm.get_parameters_by_path(Path=SSM_PATH, Recursive=True, WithDecryption=True,
                                          **({"NextToken": token} if token else {}))
        found.update({p["Name"]: p["Value"] for p in page["Parameters"]})
        if not (token := page.get("NextToken")):
            return found


@pytest.fixture(scope="module")
def first_run(scenario):
    proc = scenario.playbook("site.yml", "site.yml")
    scenario.stage = "converged"
    return recap(proc.stdout)


@pytest.fixture(scope="module")
def stored_secrets(scenario, first_run, ssm) -> dict[str, str]:
    """The secrets the first run generated, read from the emulated SSM while the stack is up."""
    scenario.require_live()
    prefix = f"{SSM_PATH}/secrets/"
    return {name[len(prefix):]: value for name, value in parameters(ssm).items() if name.startswith(prefix)}


@pytest.fixture
def live(scenario, first_run) -> Scenario:
    scenario.require_live()
    return scenario


@pytest.fixture(scope="module")
def second_run(scenario, first_run):
    scenario.require_live()
    return recap(scenario.playbook("site.yml again", "site.yml").stdout)


@pytest.fixture(scope="module")
def check_runs(scenario, first_run):
    scenario.require_live()
    site = scenario.playbook("site.yml --check --diff", "site.yml", "--check", "--diff")
    validate = scenario.playbook("validate.yml --check --diff", "validate.yml", "--check", "--diff")
    return site, validate


@pytest.fixture(scope="module")
def validate_run(scenario, first_run):
    scenario.require_live()
    return scenario.playbook("validate.yml", "validate.yml")


@pytest.fixture(scope="module")
def diagram_runs(scenario, first_run) -> list[subprocess.CompletedProcess]:
    """make diagram's playbook, twice, on the converged environment."""
    scenario.require_live()
    return [scenario.playbook(f"diagram.yml #{n}", "diagram.yml") for n in (1, 2)]


@dataclass(frozen=True)
class Probe:
    request_id: str  # not secret: finds the probe's requests in the logs searched
    markers: dict[str, str]  # where a marker was sent: the marker
    statuses: tuple[int, ...]


@pytest.fixture(scope="module")
def probe(scenario, first_run, stored_secrets) -> Probe:
    """Requests through nginx carrying markers: a wrong bearer token, a query string, a JSON body."""
    scenario.require_live()
    request_id = f"e2e-probe-{secrets.token_hex(8)}"
    markers = {where: f"tm-marker-{where}-{secrets.token_hex(12)}" for where in ("token", "query", "body")}
    token = stored_secrets["api_token"]
    name = f"e2e-probe-{secrets.token_hex(4)}"
    body = {"name": name, "description": markers["body"]}
    path = f"/flags?probe={markers['query']}"
    statuses = (
        send("POST", path, {"Authorization": f"Bearer {markers['token']}", "X-Request-ID": request_id}, body),
        send("POST", path, {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}, body),
        send("DELETE", f"/flags/{name}", {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}),
    )
    return Probe(request_id, markers, statuses)


def acme_dns(path: str, body: dict) -> None:
    """Changes what the ACME server's DNS answers (pebble-challtestsrv's management API)."""
    req = urllib.request.Request(ACME_DNS_API + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.status


def web_certificate_files() -> str:
    """The checksums of the certificate and key nginx serves, and the challenge answers left, on the web host."""
    return as_admin("tm-local-web", "sudo -n sh -c 'sha256sum /etc/nginx/tls/togglemaster.crt "
                                    "/etc/nginx/tls/togglemaster.key; ls -A /var/lib/acme-challenge/.well-known/acme-challenge'")


@dataclass(frozen=True)
class Acme:
    issued: dict  # the certificate the first run got
    renewed: subprocess.CompletedProcess  # the ACME phase again, with the certificate due
    renewed_certificate: dict
    after_renewal: subprocess.CompletedProcess  # the ACME phase again, not due
    files_before_failure: str
    unreachable: subprocess.CompletedProcess  # an order whose challenge the server cannot reach
    files_after_failure: str
    certificate_after_failure: dict


@pytest.fixture(scope="module")
def acme(scenario, second_run, check_runs, validate_run) -> Acme:
    """The web host's certificate renewed when forced due, then an order whose challenge cannot be reached."""
    scenario.require_live()
    issued = served_certificate()
    phase = ("deploy.yml", "--tags", "acme_certificate")
    # Pebble's certificates last 90 days: due when fewer than 100 are left.
    renewed = scenario.playbook("deploy.yml acme (due)", *phase, "-e", "acme_certificate_remaining_days=100")
    renewed_certificate = served_certificate()
    after_renewal = scenario.playbook("deploy.yml acme (not due)", *phase)
    files_before = web_certificate_files()
    # The ACME server's DNS now sends its check to the database host, where nothing answers on port 80.
    db_address = container_address("tm-local-db")
    acme_dns("/add-a", {"host": DOMAIN, "addresses": [db_address]})
    try:
        unreachable = scenario.playbook("deploy.yml acme (unreachable)", *phase, "-e", "acme_certificate_remaining_days=100",
                                        check=False)
    finally:
        acme_dns("/clear-a", {"host": DOMAIN})
    return Acme(issued, renewed, renewed_certificate, after_renewal, files_before, unreachable,
                web_certificate_files(), served_certificate())


@dataclass(frozen=True)
class Teammate:
    lock_seen: dict  # the lock this checkout's deploy held while the teammate's deploy was refused
    holder: subprocess.CompletedProcess  # this checkout's deploy, which held the lock
    refused: subprocess.CompletedProcess  # the teammate's deploy meanwhile
    holder_still_running: bool  # when the refusal came
    deploy: subprocess.CompletedProcess  # the teammate's deploy afterwards
    status: subprocess.CompletedProcess  # status.yml from the teammate's checkout
    env_file_before: str = field(repr=False)
    env_file_after: str = field(repr=False)
    secrets_after: dict[str, str] = field(repr=False)
    checkout_state: list[str] = field(default_factory=list)  # files under the teammate's .state/


def fresh_checkout(into: Path) -> Path:
    """A teammate's clone: `git clone` of this repository, with this working tree's uncommitted
    changes laid over it (so work in progress is tested too; on CI's clean checkout there are
    none); no .state/, no build/. The venv is shared, as `make setup-control` would make the same."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    def listed(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True).stdout
        return [name for name in out.decode().split("\0") if name]
    for name in listed("--deleted"):
        (into / name).unlink(missing_ok=True)
    for name in listed("--modified", "--others", "--exclude-standard"):
        source, target = ROOT / name, into / name
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            if source.is_symlink():
                target.symlink_to(source.readlink())
            else:
                shutil.copy2(source, target)
    (into / ".venv").symlink_to(ROOT / ".venv")
    assert not (into / ".state").exists() and not (into / "build").exists()
    return into


@pytest.fixture(scope="module")
def teammate(scenario, ssm, stored_secrets, second_run, check_runs, validate_run, probe, acme,
             tmp_path_factory) -> Teammate:
    """A second checkout deploys the running demo: refused while this checkout's deploy holds the lock,
    then with nothing to change on the hosts; then status.yml."""
    scenario.require_live()
    home = tmp_path_factory.mktemp("teammate")
    checkout = fresh_checkout(home / "checkout")
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "teammate", "-f", str(key)], check=True)
    admins = home / "admins.yml"
    admins.write_text(yaml.safe_dump({"admin_ssh_keys": [{"name": "teammate", "key": (home / "id_ed25519.pub").read_text().strip()}]}))
    env_file = "sudo -n cat /etc/togglemaster/togglemaster.env"
    env_file_before = as_admin("tm-local-web", env_file)

    # This checkout's deploy authorizes the teammate's key and holds the lock meanwhile.
    started = subprocess.Popen([str(BIN / "ansible-playbook"), "-v", "-i", "inventories/local", "playbooks/deploy.yml",
                                "-e", f"@{admins}"], cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while f"{SSM_PATH}/lock" not in parameters(ssm):
        assert started.poll() is None and time.monotonic() < deadline, "the deploy never took the lock"
        time.sleep(0.5)
    lock_seen = json.loads(parameters(ssm)[f"{SSM_PATH}/lock"])
    # The teammate's laptop trusts the same local CA and ACME server (what AWS and Let's Encrypt are to a team).
    teammate_args = ("-e", f"@{admins}", "-e", f"ansible_ssh_private_key_file={key}",
                     "-e", f"local_stand_ins_dir={STATE}")
    refused = scenario.playbook("teammate deploy.yml refused", "deploy.yml", *teammate_args, check=False,
                                checkout=checkout)
    holder_still_running = started.poll() is None
    out, err = started.communicate(timeout=600)
    holder = subprocess.CompletedProcess(started.args, started.returncode, out, err)
    scenario.runs["deploy.yml holding the lock"] = holder
    if holder.returncode != 0:
        pytest.fail(f"this checkout's deploy failed:\n{out[-4000:]}\n{err[-2000:]}")

    deploy = scenario.playbook("teammate deploy.yml", "deploy.yml", *teammate_args, checkout=checkout)
    status = scenario.playbook("teammate status.yml", "status.yml", *teammate_args, checkout=checkout)
    state = checkout / ".state"
    return Teammate(lock_seen, holder, refused, holder_still_running, deploy, status, env_file_before,
                    as_admin("tm-local-web", env_file), parameters(ssm),
                    sorted(str(p.relative_to(state)) for p in state.rglob("*")) if state.exists() else [])


@dataclass(frozen=True)
class Destroyed:
    refused: subprocess.CompletedProcess
    held_before: dict[str, list[str]]
    held_after_check: dict[str, list[str]]
    parameters_after_check: list[str]
    held_after: dict[str, list[str]]
    parameters_after: list[str]


@pytest.fixture(scope="module")
def destroyed(scenario, emulator, ssm, second_run, check_runs, validate_run, probe, teammate) -> Destroyed:
    """destroy.yml unconfirmed, in check mode, then for real: after everything that needs the live stack."""
    scenario.require_live()
    held_before = emulator()
    refused = scenario.playbook("destroy.yml unconfirmed", "destroy.yml", check=False)
    scenario.playbook("destroy.yml --check --diff", *DESTROY, "--check", "--diff")
    held_after_check, outputs_after_check = emulator(), sorted(parameters(ssm))
    scenario.stage = "destroyed"
    scenario.playbook("destroy.yml", *DESTROY)
    return Destroyed(refused, held_before, held_after_check, outputs_after_check, emulator(),
                     sorted(parameters(ssm)))


@dataclass(frozen=True)
class Evidence:
    # Kept out of repr: a failing assertion must not print what it looks for.
    secrets: dict[str, str] = field(repr=False)
    outputs: dict[str, str] = field(repr=False)  # playbook run: its stdout and stderr
    logs: dict[str, str] = field(repr=False)  # log: its text


@pytest.fixture(scope="module")
def evidence(scenario, destroyed, probe, stored_secrets) -> Evidence:
    """The generated secrets, every playbook's output and the hosts' logs, read while the hosts are still up."""
    assert scenario.stage == "destroyed", scenario.stage
    values = dict(stored_secrets)
    logs = {
        "service journal (tm-local-web)": as_admin("tm-local-web", "sudo -n journalctl -u togglemaster --no-pager"),
        # Every unit, and the module invocations Ansible logs on the hosts it manages.
        **{f"whole journal ({host})": as_admin(host, "sudo -n journalctl --no-pager") for host in SSH_PORTS},
        "PostgreSQL log (tm-local-db)": as_admin("tm-local-db", "sudo -n sh -c 'cat /var/log/postgresql/*'"),
        "nginx logs (tm-local-web)": as_admin("tm-local-web", "sudo -n sh -c 'cat /var/log/nginx/*'"),
    }
    outputs = {label: proc.stdout + proc.stderr for label, proc in scenario.runs.items()}
    return Evidence(values, outputs, logs)


@dataclass(frozen=True)
class TornDown:
    moto_pid: int
    existed: dict[str, bool]
    failed: subprocess.CompletedProcess
    existed_after_failure: dict[str, bool]
    runs: tuple[subprocess.CompletedProcess, ...]
    exists: dict[str, bool]


@pytest.fixture(scope="module")
def torn_down(scenario, evidence, tmp_path_factory) -> TornDown:
    """`local-env.sh down` once with a docker that cannot remove containers, then twice for real."""
    moto_pid = int((STATE / "moto.pid").read_text())
    acme_pids = {daemon: int((STATE / f"acme/{daemon}.pid").read_text()) for daemon in ACME_DAEMONS}
    existed = what_exists(moto_pid, acme_pids)
    shim = tmp_path_factory.mktemp("docker-shim")
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        '[ "$1" = rm ] && { echo "Error response from daemon: simulated removal failure" >&2; exit 1; }\n'
        f'exec {shutil.which("docker")} "$@"\n')
    (shim / "docker").chmod(0o755)
    env = ansible_env()
    failed = sh("bash", "scripts/local-env.sh", "down", check=False, env={**env, "PATH": f"{shim}:{env['PATH']}"})
    existed_after_failure = what_exists(moto_pid, acme_pids)
    scenario.stage = "down"
    runs = tuple(sh("bash", "scripts/local-env.sh", "down", check=False) for _ in range(2))
    return TornDown(moto_pid, existed, failed, existed_after_failure, runs, what_exists(moto_pid, acme_pids))


# --- converged ---------------------------------------------------------------------------


def test_site_converges_every_host(first_run):
    assert set(first_run) == {"localhost", "tm-local-web", "tm-local-db"}
    assert all(failed == 0 and unreachable == 0 for _, unreachable, failed in first_run.values())


def test_the_service_answers_through_nginx(live):
    status, body = get_json("/health")
    assert status == 200 and body["status"] == "ok"
    status, _ = get_json("/ready")
    assert status == 200
    status, flags = get_json("/flags")
    assert status == 200 and isinstance(flags, list)


def test_second_run_changes_nothing(second_run):
    changed = {host: counts[0] for host, counts in second_run.items()}
    assert changed and all(count == 0 for count in changed.values()), f"changed on re-run: {changed}"


def test_check_mode_on_the_converged_environment_reports_no_change(check_runs):
    site, validate = check_runs
    counts = recap(site.stdout)
    assert counts and all(failed == 0 for _, _, failed in counts.values()), f"failed in check mode: {counts}"
    changed = {host: count[0] for host, count in counts.items()}
    assert all(count == 0 for count in changed.values()), f"changed in check mode: {changed}"
    assert "write steps were skipped in check mode" in validate.stdout


def test_validate_playbook_passes_on_the_live_service(validate_run):
    counts = recap(validate_run.stdout)
    assert counts and all(failed == 0 for _, _, failed in counts.values()), counts


def test_https_serves_a_certificate_from_the_acme_server_that_verifies(live):
    certificate = served_certificate()
    assert ("DNS", DOMAIN) in certificate["subjectAltName"]
    issuer = dict(pair[0] for pair in certificate["issuer"])
    assert issuer["commonName"].startswith("Pebble Intermediate CA"), issuer
    # The system's trust store does not know the local ACME server: the chain above is what verified it.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(BASE + "/health", timeout=10, context=ssl.create_default_context())


def test_plain_http_redirects_to_https_except_the_acme_challenge(live):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(PLAIN_BASE + "/flags?x=1", timeout=10)
    assert answer.value.code == 301
    assert answer.value.headers["Location"] == BASE + "/flags?x=1"
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(PLAIN_BASE + "/.well-known/acme-challenge/no-such-token", timeout=10)
    assert answer.value.code == 404, "the challenge path is served over plain HTTP, not redirected"


def test_validate_checks_the_redirect_and_writes_over_verified_https(validate_run):
    out = validate_run.stdout
    assert f"step redirect: plain HTTP answered 301 to {BASE}/health" in out
    assert "step create: POST /flags answered 201" in out
    assert "write steps were skipped" not in out


def test_the_diagram_draws_every_resource_the_emulated_aws_holds(diagram_runs, emulator):
    assert recap(diagram_runs[0].stdout)["localhost"][2] == 0
    assert recap(diagram_runs[1].stdout)["localhost"][0] == 0, "a second drawing of the same stack changes nothing"
    assert (STATE / "architecture.png").stat().st_size > 0
    found = emulator()
    assert found["instances"] and found["db instances"] and len(found["subnets"]) == 4
    assert undrawn((STATE / "architecture.svg").read_text(), found) == []


def test_a_due_certificate_is_renewed_and_a_current_one_is_not(acme):
    assert recap(acme.renewed.stdout)["tm-local-web"][0] > 0
    assert acme.renewed_certificate["serialNumber"] != acme.issued["serialNumber"]
    assert acme.renewed_certificate["notAfter"] != acme.issued["notAfter"] or \
        acme.renewed_certificate["notBefore"] != acme.issued["notBefore"]
    assert recap(acme.after_renewal.stdout)["tm-local-web"] == (0, 0, 0), "no new order when not due"


def test_an_unreachable_challenge_fails_clearly_and_changes_nothing_on_the_host(acme):
    out = acme.unreachable.stdout
    assert acme.unreachable.returncode != 0
    assert recap(out)["tm-local-web"][2] == 1, "the web host's run failed"
    assert "No certificate for localhost from https://" in out
    assert "The served certificate is unchanged" in out and "port 80" in out
    assert acme.files_after_failure == acme.files_before_failure, "certificate, key or challenge answers changed"
    assert acme.certificate_after_failure["serialNumber"] == acme.renewed_certificate["serialNumber"]


def test_the_probe_requests_were_answered(probe):
    # wrong token refused; right token creates the flag; the flag is removed again
    assert probe.statuses == (401, 201, 200)


@pytest.mark.parametrize("host", SSH_PORTS)
def test_admin_logs_in_with_the_key_and_escalates_without_a_password(live, host):
    assert as_admin(host, "sudo -n id -un").strip() == "root"


@pytest.mark.parametrize("host", SSH_PORTS)
def test_root_cannot_log_in_over_ssh_even_with_the_key(live, host):
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
def test_sshd_runs_keys_only_no_root_no_forwarding_three_tries(live, host):
    settings = dict(line.split(" ", 1) for line in as_admin(host, "sudo -n sshd -T").splitlines() if " " in line)
    assert {name: settings[name] for name in (
        "permitrootlogin", "passwordauthentication", "kbdinteractiveauthentication", "allowagentforwarding",
        "allowtcpforwarding", "x11forwarding", "maxauthtries")} == {
        "permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "allowagentforwarding": "no", "allowtcpforwarding": "no", "x11forwarding": "no", "maxauthtries": "3"}


@pytest.mark.parametrize("host", SSH_PORTS)
def test_logs_of_the_platform_roles_are_readable_by_the_adm_group_only(live, host):
    paths = ["/var/log/unattended-upgrades/unattended-upgrades.log",
             "/var/log/unattended-upgrades/unattended-upgrades-dpkg.log",
             "/var/log/unattended-upgrades/unattended-upgrades-shutdown.log"]
    expected = {"/var/log/unattended-upgrades": "750 root adm", **{path: "640 root adm" for path in paths}}
    if host == "tm-local-db":
        expected["/var/log/postgresql/postgresql-15-main.log"] = "640 postgres adm"
    out = as_admin(host, "sudo -n stat -c '%n %a %U %G' " + " ".join(expected))
    assert dict(line.split(" ", 1) for line in out.splitlines()) == expected


def test_the_service_logs_in_as_its_own_database_role_which_owns_its_tables(live):
    # Not as the database's master user (role db_access): its migrations made the tables as it, in its schema.
    app = resolved("db_app_user")
    env = as_admin("tm-local-web", "sudo -n grep '^DB_USER=' /etc/togglemaster/togglemaster.env")
    assert env.strip() == f'DB_USER="{app}"'
    owners = as_admin("tm-local-db", "sudo -n runuser -u postgres -- psql -X -tA -d togglemaster -c \"SELECT DISTINCT "
                                     "schemaname || ' ' || tableowner FROM pg_tables WHERE schemaname NOT IN "
                                     "('pg_catalog', 'information_schema')\"")
    assert owners.split() == [app, app], owners


# --- a teammate --------------------------------------------------------------------------


def test_a_deploy_while_another_holds_the_lock_is_refused_naming_the_holder(teammate):
    lock = teammate.lock_seen
    assert teammate.holder_still_running, "the first deploy had ended: the refusal proves nothing"
    assert teammate.refused.returncode != 0
    assert f"local is locked by {lock['who']} ({lock['caller']}) since {lock['since']}" in teammate.refused.stdout
    assert lock["action"] == "deploy" and lock["hosts"] == ["tm-local-web"]
    # Refused on the control node, before any host was touched.
    assert set(recap(teammate.refused.stdout)) == {"localhost"}


def test_a_fresh_checkout_deploys_the_running_demo_with_nothing_to_change(teammate, stored_secrets):
    changed = {host: counts[0] for host, counts in recap(teammate.deploy.stdout).items()}
    # The control node builds the release in its own checkout (the same release id); the hosts stay as they are.
    assert {host: n for host, n in changed.items() if host != "localhost"} == {"tm-local-web": 0, "tm-local-db": 0}
    assert teammate.env_file_after == teammate.env_file_before, "the env-file changed"
    secrets_now = {name.rsplit("/", 1)[1]: v for name, v in teammate.secrets_after.items() if "/secrets/" in name}
    assert secrets_now == stored_secrets, "the teammate's run changed a secret"
    assert f"API_TOKEN=\"{stored_secrets['api_token']}\"" in teammate.env_file_after
    # Nothing of the environment is kept on the teammate's laptop.
    assert teammate.checkout_state == [], teammate.checkout_state


def test_status_shows_the_live_release_the_lock_and_the_last_runs(teammate):
    out = teammate.status.stdout
    assert "Web host   tm-local-web: live " in out and "ready, running " in out
    live = re.search(r"Web host   tm-local-web: live (\S+), ready, running (\S+)", out)
    assert live and live[1] == live[2].strip('",'), out
    certificate = re.search(r"certificate localhost, issued by Pebble Intermediate CA \S+, (\d+) days left", out)
    assert certificate and 80 <= int(certificate[1]) <= 90, out
    assert "Lock       free" in out
    assert re.search(r"Last runs\s+\S+ deploy \S+ by \S+: succeeded", out), out
    assert "Database   togglemaster-local-db postgres 16.11" in out
    assert recap(out) and all(counts[0] == 0 for counts in recap(out).values()), "status.yml changed something"


# --- destroyed ---------------------------------------------------------------------------


def test_destroy_refuses_without_confirmation(destroyed):
    assert destroyed.refused.returncode != 0
    assert "confirm_destroy=local" in destroyed.refused.stdout + destroyed.refused.stderr


def test_the_emulator_listing_sees_every_kind_of_the_converged_stack(destroyed):
    # Proves the listing used after destroy can see each kind at all.
    missing = [kind for kind in KINDS if not destroyed.held_before[kind]]
    assert not missing, f"the converged stack shows no {missing}: {destroyed.held_before}"


def test_destroy_in_check_mode_reports_no_errors_and_removes_nothing(destroyed):
    assert f"{SSM_PATH}/outputs" in destroyed.parameters_after_check, "check mode removed the outputs"
    assert {f"{SSM_PATH}/secrets/{name}" for name in ("db_master_password", "db_app_password", "api_token")} <= set(
        destroyed.parameters_after_check), "check mode removed a secret"
    assert destroyed.held_after_check == destroyed.held_before


def test_destroy_removes_the_emulated_stack(destroyed):
    # Only the record of the runs stays (the lock is released when destroy's run ends).
    assert destroyed.parameters_after == [f"{SSM_PATH}/deploys"], destroyed.parameters_after
    left = {kind: ids for kind, ids in destroyed.held_after.items() if ids}
    assert set(destroyed.held_after) == set(KINDS) and not left, f"still in the emulated API after destroy: {left}"


# --- down --------------------------------------------------------------------------------


def test_down_stops_at_a_removal_that_fails_and_says_what(torn_down):
    assert all(torn_down.existed.values()), f"nothing to tear down, the test proves nothing: {torn_down.existed}"
    assert torn_down.failed.returncode != 0
    assert torn_down.failed.stderr.strip().splitlines() == [
        "local-env: could not remove tm-local-web: Error response from daemon: simulated removal failure"]
    assert torn_down.existed_after_failure == torn_down.existed


def test_down_twice_succeeds_and_leaves_nothing(torn_down):
    first, second = torn_down.runs
    assert (first.returncode, second.returncode) == (0, 0), [run.stdout + run.stderr for run in torn_down.runs]
    assert "removed tm-local-web" in first.stdout and "removed" not in second.stdout, second.stdout
    left = [thing for thing, exists in torn_down.exists.items() if exists]
    assert not left, f"still present after down: {left}"


# --- no secret is printed ----------------------------------------------------------------


def leaked_lines(text: str, evidence: Evidence, probe: Probe) -> list[str]:
    """Each line holding a secret or a marker, with all of them replaced by their names: safe to print."""
    needles = {**evidence.secrets, **{f"{where} marker": marker for where, marker in probe.markers.items()}}
    found = []
    for line in text.splitlines():
        if names := [name for name, value in needles.items() if value in line]:
            for name, value in needles.items():
                line = line.replace(value, f"<{name}>")
            at = min(line.index(f"<{name}>") for name in names)
            found.append(line[max(0, at - 200):at + 200])
    return found


def test_the_secrets_and_logs_searched_are_not_empty(evidence, probe):
    lengths = {name: len(value) for name, value in evidence.secrets.items()}
    assert lengths == {"db_master_password": 32, "db_app_password": 32, "api_token": 40}, \
        "a generated secret is not as group_vars makes it"
    assert set(evidence.outputs) == {
        "site.yml", "site.yml again", "site.yml --check --diff", "validate.yml --check --diff", "validate.yml",
        "deploy.yml acme (due)", "deploy.yml acme (not due)", "deploy.yml acme (unreachable)",
        "deploy.yml holding the lock", "teammate deploy.yml refused", "teammate deploy.yml", "teammate status.yml",
        "diagram.yml #1", "diagram.yml #2", "destroy.yml unconfirmed", "destroy.yml --check --diff", "destroy.yml"}
    assert all(evidence.outputs.values())
    empty = [name for name, text in evidence.logs.items() if not text.strip()]
    assert not empty, f"nothing read from {empty}"
    for name in ("service journal (tm-local-web)", "nginx logs (tm-local-web)"):
        assert evidence.logs[name].count(probe.request_id) >= 3, f"the probe's requests are not in the {name}"
    for host in SSH_PORTS:
        assert "Invoked with" in evidence.logs[f"whole journal ({host})"], f"no module invocation in {host}'s journal"


def test_no_playbook_prints_a_secret_or_a_marker(evidence, probe):
    leaks = {label: lines[:5] for label, output in evidence.outputs.items()
             if (lines := leaked_lines(output, evidence, probe))}
    assert not leaks, f"printed by: {json.dumps(leaks, indent=1)}"


@pytest.mark.parametrize("log", ["service journal (tm-local-web)", "whole journal (tm-local-web)",
                                 "whole journal (tm-local-db)", "PostgreSQL log (tm-local-db)",
                                 "nginx logs (tm-local-web)"])
def test_no_log_holds_a_secret_or_a_marker(evidence, probe, log):
    lines = leaked_lines(evidence.logs[log], evidence, probe)
    assert not lines, f"the {log} holds, in {len(lines)} lines:\n" + "\n".join(lines[:10])
