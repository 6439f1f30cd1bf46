"""The local demo in topology ha, end to end: HAProxy (standing in for the ALB) in front of two web
hosts, with the same site.yml, inventories/local plus inventories/local-ha.

One scenario, each stage a module fixture that needs the one before it:

1. up with TOPOLOGY=ha, then site.yml: the emulated ALB and target group, HAProxy with the ACME
   certificate, the service on both hosts, validated through the load balancer;
2. a no-op re-run and --check --diff: changed=0;
3. a new release rolled out under load through the load balancer, one host at a time: no request
   fails, and the load balancer always has a server in service;
4. a release that fails its health gate on the first host: the rollout stops there, that host is
   back on the previous release and out of the load balancer, the other one never left it;
   no read fails; a re-run of the good release puts the host back;
5. destroy.yml, then `scripts/local-env.sh down`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import boto3
import pytest
from cryptography import x509

from conftest import BIN
from emulated_aws import clients, tagged_resources, undrawn
from local_demo import (HA, NETWORK, STATE, Load, Scenario, container_address, docker_out, get_json, recap, send,
                        served_certificate, sh)

WEB = ("tm-local-web", "tm-local-web-2")
LB = "tm-local-lb"
BACKEND = "togglemaster"
DESTROY = ("destroy.yml", "-e", "confirm_destroy=local", "-e", "aws_rds_skip_final_snapshot=true")


def lb_servers() -> dict[str, str]:
    """Each web host's state in the load balancer's backend (UP, DOWN, MAINT, ...), from its runtime API."""
    script = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(b'show stat\\n'); print(s.makefile().read())")
    rows = [line.split(",") for line in docker_out("exec", LB, "python3", "-c", script).splitlines()
            if line and not line.startswith("#")]
    return {row[1]: row[17] for row in rows if row[0] == BACKEND and row[1] in WEB}


def live_release(host: str) -> str:
    return docker_out("exec", host, "readlink", "/opt/togglemaster/current").rsplit("/", 1)[-1]


def secret(name: str) -> str:
    return sh(str(BIN / "python"), "scripts/secret.py", "local", name).stdout.strip()


@dataclass
class Watch:
    """Samples the load balancer's view of the web hosts until stopped."""

    samples: list[dict[str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(lb_servers())
            self._stop.wait(0.2)

    def __enter__(self) -> "Watch":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def fewest_up(self) -> int:
        return min(sum(state == "UP" for state in sample.values()) for sample in self.samples)

    def ever_out(self) -> set[str]:
        return {host for sample in self.samples for host, state in sample.items() if state != "UP"}


# --- the scenario's stages, in order ------------------------------------------------------


@pytest.fixture(scope="module")
def scenario():
    for name in ("tm-local-web", LB):
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                 capture_output=True, text=True).stdout.strip()
        if running == "true":
            pytest.fail("a local demo is running; this test replaces it. Tear it down first: make demo-down")
    env = {**os.environ, "TOPOLOGY": "ha"}
    sh("bash", "scripts/local-env.sh", "up", env=env)
    try:
        yield Scenario(inventory=HA)
    finally:
        sh("bash", "scripts/local-env.sh", "down", check=False)


@pytest.fixture(scope="module")
def first_run(scenario):
    proc = scenario.playbook("site.yml", "site.yml")
    scenario.stage = "converged"
    return proc


@pytest.fixture(scope="module")
def second_run(scenario, first_run):
    scenario.require_live()
    return recap(scenario.playbook("site.yml again", "site.yml").stdout)


@pytest.fixture(scope="module")
def check_run(scenario, second_run):
    scenario.require_live()
    return recap(scenario.playbook("site.yml --check --diff", "site.yml", "--check", "--diff").stdout)


@dataclass(frozen=True)
class Rollout:
    before: dict[str, str]
    after: dict[str, str]
    release: str
    reads: Load
    writes: Load
    watch: Watch
    servers_after: dict[str, str]


@pytest.fixture(scope="module")
def rollout(scenario, check_run) -> Rollout:
    """A new release, deployed through the load balancer while reads and writes go on."""
    scenario.require_live()
    token = secret("api_token")
    status, _ = get_json("/health")
    assert status == 200
    sh("curl", "-fsS", "--cacert", str(STATE / "acme/root.pem"), "-X", "POST", "-H", f"Authorization: Bearer {token}",
       "-H", "Content-Type: application/json", "-d", '{"name": "ha-rollout"}', "https://localhost:8443/flags")
    before = {host: live_release(host) for host in WEB}
    release = f"e2e-ha-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    with Watch() as watch, Load("/flags/ha-rollout") as reads, Load("/flags/ha-rollout", token=token, threads=1) as writes:
        scenario.playbook("rollout", "deploy.yml", "-e", f"release_build_id_override={release}")
    after = {host: live_release(host) for host in WEB}
    return Rollout(before, after, release, reads, writes, watch, lb_servers())


@dataclass(frozen=True)
class FailedGate:
    proc: subprocess.CompletedProcess
    releases: dict[str, str]
    servers: dict[str, str]
    reads: Load
    watch: Watch
    rerun: subprocess.CompletedProcess
    servers_after_rerun: dict[str, str]


@pytest.fixture(scope="module")
def failed_gate(scenario, rollout) -> FailedGate:
    """A release that cannot start (no threads; the pre-switch checks that would catch it are off,
    so the health gate is what catches it), then the good one again."""
    scenario.require_live()
    broken = rollout.release + "-broken"
    with Watch() as watch, Load("/flags/ha-rollout") as reads:
        proc = scenario.playbook(
            "broken rollout", "deploy.yml", "-e", f"release_build_id_override={broken}",
            "-e", json.dumps({"flag_service_extra_env": {"WEB_THREADS": "0"}, "flag_service_preflight_check": False,
                              "flag_service_run_migrations": False, "flag_service_health_retries": 3}),
            check=False)
    releases = {host: live_release(host) for host in WEB}
    servers = lb_servers()
    rerun = scenario.playbook("good release again", "deploy.yml", "-e", f"release_build_id_override={rollout.release}")
    return FailedGate(proc, releases, servers, reads, watch, rerun, lb_servers())


@pytest.fixture(scope="module")
def status_run(scenario, failed_gate) -> subprocess.CompletedProcess:
    scenario.require_live()
    return scenario.playbook("status.yml", "status.yml")


@pytest.fixture(scope="module")
def destroyed(scenario, failed_gate, status_run):
    scenario.require_live()
    proc = scenario.playbook("destroy.yml", *DESTROY)
    scenario.stage = "destroyed"
    return proc


# --- converged ---------------------------------------------------------------------------


def test_site_converges_the_load_balancer_and_both_web_hosts(first_run):
    counts = recap(first_run.stdout)
    assert set(counts) == {"localhost", *WEB, LB, "tm-local-db"}
    assert all(failed == 0 and unreachable == 0 for _, unreachable, failed in counts.values())


def test_both_web_hosts_are_in_service_behind_the_load_balancer(first_run):
    assert lb_servers() == {host: "UP" for host in WEB}


def test_the_load_balancer_serves_the_acme_certificate(first_run):
    certificate = served_certificate()
    assert ("DNS", "localhost") in certificate["subjectAltName"]
    issuer = dict(pair[0] for pair in certificate["issuer"])
    assert "Pebble" in issuer["commonName"], issuer


def test_the_emulated_alb_serves_the_same_certificate_from_acm(first_run):
    """The deploy imported the ACME order's certificate into (emulated) ACM for the ALB's HTTPS listener."""
    aws = {"endpoint_url": "http://127.0.0.1:5050", "region_name": "sa-east-1",
           "aws_access_key_id": "emulated", "aws_secret_access_key": "emulated"}
    elbv2, acm = boto3.client("elbv2", **aws), boto3.client("acm", **aws)
    balancer = elbv2.describe_load_balancers(Names=["togglemaster-local"])["LoadBalancers"][0]
    listeners = {item["Port"]: item for item in
                 elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]}
    assert set(listeners) == {80, 443}
    pem = acm.get_certificate(CertificateArn=listeners[443]["Certificates"][0]["CertificateArn"])["Certificate"]
    imported = x509.load_pem_x509_certificate(pem.encode())
    assert f"{imported.serial_number:X}" == served_certificate()["serialNumber"].lstrip("0")


def test_the_diagram_gains_the_load_balancer_and_the_second_web_host(scenario, first_run):
    scenario.playbook("diagram.yml", "diagram.yml")
    ec2, rds = clients("http://127.0.0.1:5050", "sa-east-1", "emulated", "emulated")
    found = tagged_resources(ec2, rds, {"Project": "togglemaster", "Environment": "local"})
    assert len(found["instances"]) == 2
    svg = (STATE / "architecture.svg").read_text()
    assert undrawn(svg, found) == []
    assert "togglemaster-local" in svg, "the load balancer"


def test_the_web_hosts_see_the_client_not_the_load_balancer(first_run):
    """nginx takes the client's address from HAProxy's X-Forwarded-For (lb_trusted_proxies): the
    address HAProxy saw, here the Docker network's gateway; not HAProxy's, nor one the client wrote."""
    request_id = f"client-probe-{uuid.uuid4().hex[:12]}"
    assert send("GET", "/health", {"X-Request-ID": request_id, "X-Forwarded-For": "198.51.100.1"}) == 200
    entries = [json.loads(line) for host in WEB for line in docker_out(
        "exec", host, "sh", "-c", f"grep -h {request_id} /var/log/nginx/togglemaster.access.log || true").splitlines()]
    assert len(entries) == 1, entries
    balancer = container_address(LB)
    gateway = docker_out("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", NETWORK)
    assert entries[0]["remote_addr"] == gateway != balancer, (entries[0], balancer)


def test_validate_runs_through_the_load_balancer(first_run):
    out = first_run.stdout
    assert "step redirect: plain HTTP answered 301 to https://localhost:8443/health" in out
    assert "write" in out and "validate : " in out


def test_second_run_and_check_mode_change_nothing(second_run, check_run):
    for label, counts in (("re-run", second_run), ("--check --diff", check_run)):
        changed = {host: c[0] for host, c in counts.items() if c[0]}
        assert counts and not changed, f"changed on {label}: {changed}"


# --- rollout -----------------------------------------------------------------------------


def test_a_rollout_switches_every_host_one_at_a_time_without_a_failed_request(rollout):
    assert all(release != rollout.release for release in rollout.before.values())
    assert rollout.after == {host: rollout.release for host in WEB}
    assert rollout.reads.sent > 100 and rollout.reads.failed == 0, str(rollout.reads)
    assert rollout.writes.sent > 20 and rollout.writes.failed == 0, str(rollout.writes)
    # Each host left the load balancer during its switch, never both at once, and both are back.
    assert rollout.watch.ever_out() == set(WEB)
    assert rollout.watch.fewest_up() == 1
    assert rollout.servers_after == {host: "UP" for host in WEB}


# --- a host fails its gate ---------------------------------------------------------------


def test_a_host_that_fails_its_gate_stops_the_rollout_and_stays_out(failed_gate, rollout):
    counts = recap(failed_gate.proc.stdout)
    assert failed_gate.proc.returncode != 0
    assert counts["tm-local-web"][2] == 1, counts
    assert "was NOT put live on tm-local-web" in failed_gate.proc.stdout
    assert f"Rolled back to release {rollout.release}, which is serving again" in failed_gate.proc.stdout
    # Reverted on the first host, never touched on the second, which kept serving throughout.
    assert failed_gate.releases == {host: rollout.release for host in WEB}
    assert failed_gate.servers["tm-local-web"] == "MAINT" and failed_gate.servers["tm-local-web-2"] == "UP"
    assert "tm-local-web-2" not in failed_gate.watch.ever_out()
    assert failed_gate.reads.sent > 50 and failed_gate.reads.failed == 0, str(failed_gate.reads)


def test_a_rerun_of_the_good_release_puts_the_host_back(failed_gate):
    assert failed_gate.servers_after_rerun == {host: "UP" for host in WEB}


def test_status_shows_the_load_balancer_and_its_targets(status_run):
    line = next((line for line in status_run.stdout.splitlines() if "Balancer   togglemaster-local " in line), "")
    assert line, status_run.stdout[-3000:]
    assert line.count(" healthy") == len(WEB), line


def test_status_shows_the_certificate_in_acm_for_the_load_balancer_and_none_for_the_web_hosts(status_run):
    lines = status_run.stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if "Balancer   togglemaster-local " in line), None)
    assert at is not None, status_run.stdout[-3000:]
    served = re.search(r"certificate localhost, issued by Pebble Intermediate CA \S+, (\d+) days left", lines[at + 1])
    assert served and 80 <= int(served[1]) <= 90, lines[at:at + 2]
    # The web hosts serve plain HTTP to the load balancer: no certificate line of their own.
    shown = [line for line in lines if re.match(r'\s*"\s+certificate ', line)]
    assert shown == [lines[at + 1]], status_run.stdout[-3000:]


# --- destroyed ---------------------------------------------------------------------------


def test_destroy_removes_the_load_balancer_too(destroyed):
    counts = recap(destroyed.stdout)
    assert counts["localhost"][2] == 0
    assert "aws_load_balancer" in destroyed.stdout
