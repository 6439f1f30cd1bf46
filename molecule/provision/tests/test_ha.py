"""The ha topology: an Application Load Balancer in front of two web instances, then destroy.

A separate environment (`ha`) in the same emulated account, like test_interrupted.py, so the
converged staging environment (topology single) is not touched. provision.yml runs three times:
with a certificate, again with it (nothing changes), and without it, as a provisioning run after
a deploy imported the certificate (nothing changes, HTTPS stays); then destroy.yml, told nothing
of the topology, removes it all.
"""

from __future__ import annotations

import datetime
import json
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import PROJECT, REPO_DIR, SCENARIO_DIR, load_yaml, GROUP_VARS, egress, ingress, run_ansible, venv_bin

ENVIRONMENT = "ha"
NAME = f"{PROJECT}-{ENVIRONMENT}"
TEST_DOMAIN = "ha.example.test"
ACME_PATH = "/.well-known/acme-challenge/*"
RECAP = re.compile(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0\b")


def playbook(name: str, *extra: str):
    return run_ansible([
        venv_bin("ansible-playbook"), "-i", str(SCENARIO_DIR / "inventory"),
        str(REPO_DIR / "playbooks" / name), "-e", f"env_name={ENVIRONMENT}",
        "-e", f"state_dir={REPO_DIR / '.state' / 'molecule-provision-ha'}", *extra,
    ])


def changed(result) -> int:
    """The run's changed count; the run must have succeeded."""
    match = RECAP.search(result.stdout)
    assert result.returncode == 0 and match, result.stdout[-3000:] + result.stderr
    return int(match.group(1))


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def issue(subject: str, issuer: x509.Certificate | None, issuer_key, key) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def tags_of(tag_list: list[dict]) -> dict:
    return {t["Key"]: t["Value"] for t in tag_list}


def env_filters(environment: str = ENVIRONMENT) -> list[dict]:
    return [{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "tag:Environment", "Values": [environment]}]


@pytest.fixture(scope="module")
def ec2(aws):
    return aws("ec2")


@pytest.fixture(scope="module")
def elbv2(aws):
    return aws("elbv2")


@pytest.fixture(scope="module")
def acm(aws):
    return aws("acm")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> dict:
    """A certificate for the test name from a test CA, given as the full chain an ACME server sends."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = issue("ToggleMaster test CA", None, ca_key, ca_key)
    leaf = issue(TEST_DOMAIN, ca, ca_key, key)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    extra_vars = tmp_path_factory.mktemp("ha") / "certificate.json"
    extra_vars.write_text(json.dumps({
        "aws_load_balancer_certificate_content": pem(leaf) + pem(ca),
        "aws_load_balancer_certificate_key_content": key_pem,
    }), encoding="utf-8")
    extra_vars.chmod(0o600)
    return {"leaf": leaf, "ca": ca, "extra_vars": f"@{extra_vars}"}


@pytest.fixture(scope="module")
def provisioned(certificate):
    result = playbook("provision.yml", "-e", "topology=ha", "-e", certificate["extra_vars"])
    assert changed(result) > 0
    return result


@pytest.fixture(scope="module")
def outputs(aws, provisioned) -> dict:
    return json.loads(aws("ssm").get_parameter(Name=f"/{PROJECT}/{ENVIRONMENT}/outputs")["Parameter"]["Value"])


@pytest.fixture(scope="module")
def load_balancer(elbv2, provisioned) -> dict:
    found = elbv2.describe_load_balancers(Names=[NAME])["LoadBalancers"]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def target_group(elbv2, provisioned) -> dict:
    return elbv2.describe_target_groups(Names=[f"{NAME}-web"])["TargetGroups"][0]


def listeners(elbv2, load_balancer: dict) -> dict[int, dict]:
    return {l["Port"]: l for l in elbv2.describe_listeners(LoadBalancerArn=load_balancer["LoadBalancerArn"])["Listeners"]}


def group(ec2, group_id: str) -> dict:
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def resolved(variable: str, *extra: str):
    """A variable as the real staging inventory resolves it."""
    result = run_ansible([venv_bin("ansible"), "localhost", "-i", str(REPO_DIR / "inventories" / "staging"),
                          "-m", "ansible.builtin.debug", "-a", f"var={variable}", "-o", *extra])
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split("=>", 1)[1])[variable]


@pytest.mark.parametrize(("topology", "count", "lb_group"), [("single", 1, ""), ("ha", 2, "togglemaster-staging-lb")])
def test_ha_runs_two_web_instances_behind_a_load_balancer_group_and_single_one_without(topology, count, lb_group):
    assert resolved("aws_web_instance_count", "-e", f"topology={topology}") == count
    assert resolved("aws_security_groups_lb_name", "-e", f"topology={topology}") == lb_group


def test_a_load_balancer_name_over_32_characters_is_refused_naming_the_variable():
    # The role's checks alone (its inputs entry point), with the scenario's variables: no API call.
    args = [venv_bin("ansible"), "localhost", "-i", str(SCENARIO_DIR / "inventory"), "-m", "ansible.builtin.include_role",
            "-a", "name=aws_load_balancer tasks_from=inputs", "-e", "topology=ha"]
    assert run_ansible(args).returncode == 0, "the scenario's own names must pass"
    result = run_ansible([*args, "-e", "env_name=a-long-environment-name"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "aws_load_balancer_name 'togglemaster-a-long-environment-name' (36 characters) must be 1-32" in output, output[-3000:]
    assert "or set aws_load_balancer_name." in output


def test_single_has_no_load_balancer_and_records_empty_ones(aws, ec2, elbv2):
    staging = json.loads(aws("ssm").get_parameter(Name=f"/{PROJECT}/staging/outputs")["Parameter"]["Value"])
    assert staging["topology"] == "single"
    assert [staging[k] for k in ("load_balancer_dns_name", "target_group_arn", "lb_security_group_id")] == ["", "", ""]
    roles = {tags_of(g["Tags"]).get("Role") for g in ec2.describe_security_groups(Filters=env_filters("staging"))["SecurityGroups"]}
    assert roles == {"web", "database"}
    assert not [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["LoadBalancerName"] == f"{PROJECT}-staging"]


def test_load_balancer_is_internet_facing_in_both_public_subnets_behind_its_own_group(ec2, load_balancer, outputs):
    assert load_balancer["Type"] == "application" and load_balancer["Scheme"] == "internet-facing"
    assert load_balancer["VpcId"] == outputs["vpc_id"]
    zones = {z["SubnetId"]: z["ZoneName"] for z in load_balancer["AvailabilityZones"]}
    assert set(zones) == set(outputs["public_subnet_ids"]) and len(set(zones.values())) == 2
    assert load_balancer["SecurityGroups"] == [outputs["lb_security_group_id"]]
    lb_group = group(ec2, outputs["lb_security_group_id"])
    assert tags_of(lb_group["Tags"])["Role"] == "load-balancer" and lb_group["GroupName"] == f"{NAME}-lb"


def test_target_group_checks_ready_on_port_80_and_drains_for_the_documented_delay(elbv2, target_group, outputs):
    assert (target_group["Protocol"], target_group["Port"], target_group["VpcId"]) == ("HTTP", 80, outputs["vpc_id"])
    assert target_group["TargetType"] == "instance"
    assert target_group["HealthCheckProtocol"] == "HTTP" and target_group["HealthCheckPort"] == "traffic-port"
    assert target_group["HealthCheckPath"] == "/ready" and target_group["Matcher"]["HttpCode"] == "200"
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(
        TargetGroupArn=target_group["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "30"
    assert target_group["LoadBalancerArns"] and target_group["TargetGroupArn"] == outputs["target_group_arn"]


def test_both_web_instances_are_the_targets_one_in_each_zone(ec2, elbv2, target_group, outputs):
    targets = elbv2.describe_target_health(TargetGroupArn=target_group["TargetGroupArn"])["TargetHealthDescriptions"]
    ids = sorted(t["Target"]["Id"] for t in targets)
    assert len(outputs["web_instances"]) == 2 and ids == sorted(i["id"] for i in outputs["web_instances"])
    assert {t["Target"]["Port"] for t in targets} == {80}
    instances = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    assert len({i["Placement"]["AvailabilityZone"] for i in instances}) == 2


def test_web_hosts_take_http_from_the_load_balancer_group_only(ec2, outputs):
    admins = load_yaml(GROUP_VARS)["admin_cidr"]
    web = group(ec2, outputs["web_security_group_id"])
    assert ingress(web) == {("tcp", 80, 80, outputs["lb_security_group_id"]), *{("tcp", 22, 22, a) for a in admins}}
    assert egress(web) == {
        ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 5432, 5432, outputs["db_security_group_id"]),
    }


def test_load_balancer_group_takes_web_traffic_from_anywhere_and_reaches_only_the_web_hosts(ec2, outputs):
    lb_group = group(ec2, outputs["lb_security_group_id"])
    assert ingress(lb_group) == {("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")}
    assert egress(lb_group) == {("tcp", 80, 80, outputs["web_security_group_id"])}


def test_https_listener_serves_the_imported_certificate_with_its_chain(acm, elbv2, load_balancer, target_group, certificate):
    https = listeners(elbv2, load_balancer)[443]
    assert https["Protocol"] == "HTTPS" and https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": target_group["TargetGroupArn"]}]
    [served] = https["Certificates"]
    imported = acm.get_certificate(CertificateArn=served["CertificateArn"])
    assert x509.load_pem_x509_certificate(imported["Certificate"].encode()) == certificate["leaf"]
    assert pem(certificate["ca"]).strip() in imported["CertificateChain"]
    tags = tags_of(acm.list_tags_for_certificate(CertificateArn=served["CertificateArn"])["Tags"])
    assert tags["Project"] == PROJECT and tags["Environment"] == ENVIRONMENT and tags["Name"] == NAME


def test_http_redirects_to_https_with_301_except_the_acme_challenge(elbv2, load_balancer, target_group):
    http = listeners(elbv2, load_balancer)[80]
    assert http["Protocol"] == "HTTP"
    [redirect] = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS" and redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    rules = [r for r in elbv2.describe_rules(ListenerArn=http["ListenerArn"])["Rules"] if not r["IsDefault"]]
    assert len(rules) == 1
    assert rules[0]["Conditions"][0]["Field"] == "path-pattern" and rules[0]["Conditions"][0]["Values"] == [ACME_PATH]
    assert rules[0]["Actions"] == [{"Type": "forward", "TargetGroupArn": target_group["TargetGroupArn"]}]


def test_outputs_record_the_topology_and_the_load_balancer(outputs, load_balancer):
    assert outputs["topology"] == "ha"
    assert outputs["load_balancer_dns_name"] == load_balancer["DNSName"]
    assert outputs["public_url"] == f"http://{load_balancer['DNSName']}/"


def test_a_second_run_with_the_certificate_changes_nothing(provisioned, certificate):
    assert changed(playbook("provision.yml", "-e", "topology=ha", "-e", certificate["extra_vars"])) == 0


def test_a_run_without_the_certificate_keeps_the_one_acm_holds_and_changes_nothing(provisioned, acm, elbv2, load_balancer):
    served = listeners(elbv2, load_balancer)[443]["Certificates"]
    assert changed(playbook("provision.yml", "-e", "topology=ha")) == 0
    assert listeners(elbv2, load_balancer)[443]["Certificates"] == served


@pytest.fixture(scope="module")
def destroyed(provisioned):
    result = playbook("destroy.yml", "-e", f"confirm_destroy={ENVIRONMENT}", "-e", "aws_rds_skip_final_snapshot=true")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return result


def test_destroy_removes_the_load_balancer_its_target_group_and_certificate(destroyed, elbv2, acm):
    assert [lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["LoadBalancerName"] == NAME] == []
    assert [tg for tg in elbv2.describe_target_groups()["TargetGroups"] if tg["TargetGroupName"] == f"{NAME}-web"] == []
    left = [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]
            if tags_of(acm.list_tags_for_certificate(CertificateArn=c["CertificateArn"])["Tags"]).get("Environment") == ENVIRONMENT]
    assert left == []


def test_destroy_leaves_no_security_group_or_running_instance(destroyed, ec2):
    names = [f"{NAME}-web", f"{NAME}-db", f"{NAME}-lb"]
    assert ec2.describe_security_groups(Filters=env_filters())["SecurityGroups"] == []
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": names}])["SecurityGroups"] == []
    states = {i["State"]["Name"] for r in ec2.describe_instances(Filters=env_filters())["Reservations"] for i in r["Instances"]}
    assert states <= {"terminated"}
