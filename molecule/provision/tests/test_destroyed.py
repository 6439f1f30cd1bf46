"""After destroy: nothing tagged for the environment remains, except the final snapshot asked for.

moto keeps stale entries in DescribeTags after a resource is deleted, so each resource type is
listed through its own API, as a user would in the console.
"""

from __future__ import annotations

import pytest

from conftest import ENVIRONMENT, PROJECT, STATE_DIR

EC2_LISTINGS = {
    "vpcs": ("describe_vpcs", "Vpcs"),
    "subnets": ("describe_subnets", "Subnets"),
    "internet gateways": ("describe_internet_gateways", "InternetGateways"),
    "route tables": ("describe_route_tables", "RouteTables"),
    "security groups": ("describe_security_groups", "SecurityGroups"),
    "key pairs": ("describe_key_pairs", "KeyPairs"),
    "volumes": ("describe_volumes", "Volumes"),
}


@pytest.mark.parametrize("kind", sorted(EC2_LISTINGS))
def test_no_ec2_resource_of_the_environment_remains(aws, env_filters, kind):
    method, key = EC2_LISTINGS[kind]
    found = getattr(aws("ec2"), method)(Filters=env_filters)[key]
    assert found == [], f"{kind} still tagged for {ENVIRONMENT}: {found}"


def test_no_instance_of_the_environment_is_left_running(aws, env_filters):
    reservations = aws("ec2").describe_instances(Filters=env_filters)["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    assert all(state == "terminated" for state in states.values()), states


def tags_of(rds, arn: str) -> dict:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def is_ours(tags: dict) -> bool:
    return tags.get("Project") == PROJECT and tags.get("Environment") == ENVIRONMENT


def test_no_database_or_subnet_group_of_the_environment_remains(aws):
    rds = aws("rds")
    instances = [d for d in rds.describe_db_instances()["DBInstances"] if is_ours(tags_of(rds, d["DBInstanceArn"]))]
    groups = [g for g in rds.describe_db_subnet_groups()["DBSubnetGroups"] if is_ours(tags_of(rds, g["DBSubnetGroupArn"]))]
    assert instances == [] and groups == []


def test_a_final_snapshot_was_kept_and_carries_no_environment_tags(aws):
    rds = aws("rds")
    snapshots = [
        s for s in rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
        if s["DBSnapshotIdentifier"].startswith(f"{PROJECT}-{ENVIRONMENT}-db-final-")
    ]
    assert len(snapshots) == 1, "destroy must take exactly one final snapshot (and not again on a re-run)"
    assert not is_ours(tags_of(rds, snapshots[0]["DBSnapshotArn"]))


def test_outputs_and_secrets_are_removed_from_parameter_store(aws):
    ssm = aws("ssm")
    left = ssm.get_parameters_by_path(Path=f"/{PROJECT}/{ENVIRONMENT}", Recursive=True)["Parameters"]
    # The lock is this destroy run's own, released when the run ends; the record of runs stays.
    assert sorted(p["Name"] for p in left) in (
        [], [f"/{PROJECT}/{ENVIRONMENT}/lock"], [f"/{PROJECT}/{ENVIRONMENT}/deploys", f"/{PROJECT}/{ENVIRONMENT}/lock"])
