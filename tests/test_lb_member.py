"""The rolling deploy's take-out / put-back step (role lb_member) through an ALB target group,
against an emulated AWS API of the module's own (moto). HAProxy's implementation runs in the
end-to-end test of the ha topology (tests/e2e/test_local_ha.py), against a real HAProxy.

moto reports a registered target healthy at once and a deregistered one unused at once (no
draining); what this shows is the API calls, the waits' end states, the no-op re-runs and the
refused inputs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from conftest import BIN, ansible_env

REGION = "sa-east-1"
RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")


@pytest.fixture(scope="module")
def elbv2(moto_endpoint):
    return boto3.client("elbv2", region_name=REGION, endpoint_url=moto_endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def target(moto_endpoint, elbv2) -> tuple[str, str]:
    """A target group with one instance registered: (target group ARN, instance id)."""
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
    group = elbv2.create_target_group(Name="tm-test-web", Protocol="HTTP", Port=80, VpcId=vpc,
                                      HealthCheckPath="/ready")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": instance, "Port": 80}])
    return group, instance


def state(elbv2, group: str, instance: str) -> str:
    health = elbv2.describe_target_health(TargetGroupArn=group, Targets=[{"Id": instance, "Port": 80}])
    return health["TargetHealthDescriptions"][0]["TargetHealth"]["State"]


@pytest.fixture
def member(moto_endpoint, tmp_path):
    """Runs the role once in a tiny playbook; returns (changed, failed, output)."""

    def play(role_vars: dict, check: bool = False) -> tuple[int, int, str]:
        playbook = tmp_path / "member.yml"
        playbook.write_text(yaml.safe_dump([{
            "name": "The host's load balancer membership",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": {"group/community.aws.aws": {
                "region": REGION, "endpoint_url": moto_endpoint, "access_key": "testing", "secret_key": "testing"}},
            "vars": {"ansible_python_interpreter": str(BIN / "python"), "lb_member_aws_host": "localhost",
                     **role_vars},
            "roles": [{"role": "lb_member"}],
        }]))
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *(["--check"] if check else [])]
        out = subprocess.run(cmd, cwd=tmp_path, env=ansible_env(), capture_output=True, text=True, timeout=120)
        found = RECAP.search(out.stdout)
        assert found, out.stdout + out.stderr
        return int(found.group(1)), int(found.group(2)), out.stdout

    return play


def through_target_group(target, lb_state: str) -> dict:
    group, instance = target
    return {"lb_member_state": lb_state, "lb_member_backend": "target_group",
            "lb_member_target_group_arn": group, "lb_member_target_id": instance}


def test_out_deregisters_the_host_and_in_registers_it_healthy_again(member, target, elbv2):
    assert state(elbv2, *target) == "healthy"

    assert member(through_target_group(target, "out"))[:2] == (1, 0)
    assert state(elbv2, *target) == "unused"
    assert member(through_target_group(target, "out"))[:2] == (0, 0), "taking out a host that is out changes nothing"

    assert member(through_target_group(target, "in"))[:2] == (1, 0)
    assert state(elbv2, *target) == "healthy"
    assert member(through_target_group(target, "in"))[:2] == (0, 0), "putting back a host that is in changes nothing"


def test_a_backend_without_its_load_balancer_is_refused_naming_the_variable(member, target):
    changed, failed, out = member({"lb_member_state": "out", "lb_member_backend": "haproxy"})
    assert (changed, failed) == (0, 1)
    assert "lb_member_backend haproxy needs lb_member_haproxy_host" in out

    changed, failed, out = member({**through_target_group(target, "out"), "lb_member_target_id": ""})
    assert (changed, failed) == (0, 1)
    assert "lb_member_target_group_arn and lb_member_target_id" in out


def test_an_unknown_backend_is_refused_with_the_choices(member):
    changed, failed, out = member({"lb_member_state": "out", "lb_member_backend": "nlb"})
    assert failed == 1
    assert "lb_member_backend" in out and "target_group" in out and "haproxy" in out
