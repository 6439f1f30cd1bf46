"""What the emulated AWS API holds for one environment, kind by kind.

moto keeps stale entries in DescribeTags after a resource is deleted, so each kind is listed
through its own API, filtered by the environment's tags, as a user would in the console
(molecule/provision/tests/test_destroyed.py lists staging the same way).
"""

from __future__ import annotations

from urllib.parse import urlparse

import boto3

# kind: (EC2 describe call, list in its answer, id of an item)
EC2_KINDS = {
    "vpcs": ("describe_vpcs", "Vpcs", "VpcId"),
    "subnets": ("describe_subnets", "Subnets", "SubnetId"),
    "route tables": ("describe_route_tables", "RouteTables", "RouteTableId"),
    "internet gateways": ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    "security groups": ("describe_security_groups", "SecurityGroups", "GroupId"),
    "key pairs": ("describe_key_pairs", "KeyPairs", "KeyName"),
}
KINDS = (*EC2_KINDS, "instances", "db instances", "db subnet groups")
# What the architecture diagram (make diagram) draws, each with its id in the drawing.
DRAWN = ("vpcs", "subnets", "route tables", "internet gateways", "security groups", "instances", "db instances")


def undrawn(svg: str, found: dict[str, list[str]]) -> list[str]:
    """The resources of `found` (tagged_resources) whose id the diagram's SVG does not show."""
    return [f"{kind} {resource_id}" for kind in DRAWN for resource_id in found[kind] if resource_id not in svg]


def is_loopback(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in {"http", "https"} and parsed.hostname in {"127.0.0.1", "localhost", "::1"}


def clients(endpoint: str, region: str, key: str, secret: str) -> tuple:
    """EC2 and RDS clients that can only reach the emulator on loopback, with its placeholder keys."""
    assert is_loopback(endpoint), f"refusing to list an endpoint that is not on loopback: {endpoint}"
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=region)
    return session.client("ec2", endpoint_url=endpoint), session.client("rds", endpoint_url=endpoint)


def rds_tags(rds, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def tagged_resources(ec2, rds, tags: dict[str, str]) -> dict[str, list[str]]:
    """The ids of every resource carrying all of `tags`, per kind; instances only while not terminated."""
    filters = [{"Name": f"tag:{name}", "Values": [value]} for name, value in tags.items()]
    found = {
        kind: sorted(item[id_key] for item in getattr(ec2, call)(Filters=filters)[listed])
        for kind, (call, listed, id_key) in EC2_KINDS.items()
    }
    found["instances"] = sorted(
        i["InstanceId"] for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    )

    def ours(arn: str) -> bool:
        return tags.items() <= rds_tags(rds, arn).items()

    found["db instances"] = sorted(
        d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"] if ours(d["DBInstanceArn"]))
    found["db subnet groups"] = sorted(
        g["DBSubnetGroupName"] for g in rds.describe_db_subnet_groups()["DBSubnetGroups"]
        if ours(g["DBSubnetGroupArn"]))
    return found
