"""Runs that stop half-way: what they leave behind is found and removed by destroy.

A separate environment (`partial`) in the same emulated account, so the converged staging
environment of the scenario is not touched.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import PROJECT, REPO_DIR, SCENARIO_DIR, run_ansible, venv_bin

ENVIRONMENT = "partial"
INTERRUPTED_EXIT_CODE = 97
ZONES = ["sa-east-1c", "sa-east-1b"]


def playbook(name: str, *extra: str, env: dict[str, str] | None = None):
    return run_ansible(
        [
            venv_bin("ansible-playbook"), "-i", str(SCENARIO_DIR / "inventory"),
            str(REPO_DIR / "playbooks" / name), "-e", f"env_name={ENVIRONMENT}",
            "-e", f"state_dir={REPO_DIR / '.state' / 'molecule-provision-partial'}", *extra,
        ],
        extra_env=env,
    )


def tagged(ec2, describe: str, key: str) -> list[dict]:
    filters = [{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "tag:Environment", "Values": [ENVIRONMENT]}]
    return getattr(ec2, describe)(Filters=filters)[key]


def groups_named(ec2) -> list[dict]:
    names = [f"{PROJECT}-{ENVIRONMENT}-web", f"{PROJECT}-{ENVIRONMENT}-db"]
    return ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": names}])["SecurityGroups"]


@pytest.fixture(scope="module")
def ec2(aws):
    return aws("ec2")


@pytest.fixture(scope="module")
def interrupted(ec2):
    """provision.yml killed right after its first security group call, with explicit zones."""
    result = playbook(
        "provision.yml", "-e", json.dumps({"aws_network_zones": ZONES}),
        env={
            "ANSIBLE_CALLBACK_PLUGINS": str(SCENARIO_DIR / "tests" / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "interrupt_after",
            "INTERRUPT_AFTER_ACTION": "amazon.aws.ec2_security_group",
        },
    )
    assert result.returncode == INTERRUPTED_EXIT_CODE, result.stdout[-3000:] + result.stderr
    return result


def test_an_explicit_zone_list_wins_over_the_regions_zones(ec2, interrupted):
    subnets = tagged(ec2, "describe_subnets", "Subnets")
    assert len(subnets) == 4
    by_cidr = {s["CidrBlock"]: s["AvailabilityZone"] for s in subnets}
    assert by_cidr == {"10.20.0.0/24": ZONES[0], "10.20.1.0/24": ZONES[1], "10.20.10.0/24": ZONES[0], "10.20.11.0/24": ZONES[1]}


def test_an_interrupted_run_leaves_only_groups_that_carry_the_environment_tags(ec2, interrupted):
    groups = groups_named(ec2)
    assert groups, "the run was interrupted before any security group existed"
    for group in groups:
        tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        assert tags.get("Project") == PROJECT and tags.get("Environment") == ENVIRONMENT, group["GroupName"]


def test_destroy_waits_for_a_lingering_interface_and_names_it(ec2, interrupted):
    group = groups_named(ec2)[0]
    subnet = tagged(ec2, "describe_subnets", "Subnets")[0]
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Groups=[group["GroupId"]],
                                       Description="left behind by a deleted instance")["NetworkInterface"]
    try:
        result = playbook("destroy.yml", "-e", f"confirm_destroy={ENVIRONMENT}",
                          "-e", "aws_security_groups_delete_timeout=4", "-e", "aws_security_groups_delete_retry_delay=2")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert eni["NetworkInterfaceId"] in output and "aws_security_groups_delete_timeout" in output, output[-3000:]
        assert groups_named(ec2), "a group still in use was deleted"

        # The interface goes away while a re-run waits: destroy then finishes the job.
        deleter = threading.Timer(4, ec2.delete_network_interface, kwargs={"NetworkInterfaceId": eni["NetworkInterfaceId"]})
        deleter.start()
        started = time.monotonic()
        result = playbook("destroy.yml", "-e", f"confirm_destroy={ENVIRONMENT}",
                          "-e", "aws_security_groups_delete_timeout=60", "-e", "aws_security_groups_delete_retry_delay=2")
        deleter.join()
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert time.monotonic() - started >= 4
    finally:
        if ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [eni["NetworkInterfaceId"]]}])["NetworkInterfaces"]:
            ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])

    assert groups_named(ec2) == []
    for describe, key in [("describe_vpcs", "Vpcs"), ("describe_subnets", "Subnets"),
                          ("describe_internet_gateways", "InternetGateways"), ("describe_route_tables", "RouteTables")]:
        assert tagged(ec2, describe, key) == [], describe
