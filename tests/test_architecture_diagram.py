"""playbooks/diagram.yml (role and module architecture_diagram) against an emulated AWS API of the
module's own (moto): the drawing shows what exists in AWS for the environment, found by its tags,
with every resource id and the flows its security groups allow, and is rewritten only when that
changes.

The environments are made here with boto3 the way the provisioning roles make and tag them
(aws_network, aws_security_groups, aws_web_instance, aws_rds, aws_load_balancer), not by running
those roles: what is drawn must come from AWS, not from the project's variables. The tests run
in file order over one environment, as a team would see it: check mode, the first drawing, a
no-op re-run, then the same environment turned into topology ha.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
import yaml

from conftest import BIN, ROOT, ansible_env

REGION = "sa-east-1"
PROJECT = "togglemaster"
ADMIN_CIDR = "203.0.113.7/32"
SVG_NS = "{http://www.w3.org/2000/svg}"


def client(endpoint: str, service: str):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def tag_list(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class Environment:
    """One environment's resources, made and tagged as the provisioning roles make them."""

    def __init__(self, endpoint: str, name: str, cidr_prefix: str = "10.0"):
        self.endpoint, self.name, self.net = endpoint, name, cidr_prefix
        self.ec2, self.rds, self.elbv2 = (client(endpoint, s) for s in ("ec2", "rds", "elbv2"))
        self.tags = {"Project": PROJECT, "Environment": name, "ManagedBy": "ansible"}
        self.prefix = f"{PROJECT}-{name}"
        self.ids: dict[str, list[str]] = {}

    def tagged(self, resource_type: str, name: str, **extra: str) -> list[dict]:
        return [{"ResourceType": resource_type, "Tags": tag_list({**self.tags, "Name": name, **extra})}]

    def single(self) -> "Environment":
        """aws_network, aws_security_groups (no load balancer group), one web instance, aws_rds."""
        ec2 = self.ec2
        vpc = ec2.create_vpc(CidrBlock=f"{self.net}.0.0/16", TagSpecifications=self.tagged("vpc", self.prefix))["Vpc"]["VpcId"]
        subnets = {}
        for tier, third, zone in (("public", 1, "a"), ("public", 2, "b"), ("private", 11, "a"), ("private", 12, "b")):
            az = f"{REGION}{zone}"
            subnets[(tier, zone)] = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"{self.net}.{third}.0/24", AvailabilityZone=az,
                TagSpecifications=self.tagged("subnet", f"{self.prefix}-{tier}-{az}", Tier=tier))["Subnet"]["SubnetId"]
        for zone in "ab":
            ec2.modify_subnet_attribute(SubnetId=subnets[("public", zone)], MapPublicIpOnLaunch={"Value": True})
        igw = ec2.create_internet_gateway(TagSpecifications=self.tagged("internet-gateway", f"{self.prefix}-igw"))
        igw = igw["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        tables = {}
        for tier in ("public", "private"):
            tables[tier] = ec2.create_route_table(
                VpcId=vpc, TagSpecifications=self.tagged("route-table", f"{self.prefix}-{tier}", Tier=tier))["RouteTable"]["RouteTableId"]
            for zone in "ab":
                ec2.associate_route_table(RouteTableId=tables[tier], SubnetId=subnets[(tier, zone)])
        ec2.create_route(RouteTableId=tables["public"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)

        db_sg = ec2.create_security_group(GroupName=f"{self.prefix}-db", Description="PostgreSQL from the web group only",
                                          VpcId=vpc, TagSpecifications=self.tagged("security-group", f"{self.prefix}-db",
                                                                                   Role="database"))["GroupId"]
        web_sg = ec2.create_security_group(GroupName=f"{self.prefix}-web", Description="HTTP/HTTPS from anywhere, SSH from the admin CIDR",
                                           VpcId=vpc, TagSpecifications=self.tagged("security-group", f"{self.prefix}-web",
                                                                                    Role="web"))["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=web_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN_CIDR}]},
        ])
        ec2.authorize_security_group_ingress(GroupId=db_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web_sg}]},
        ])
        self.vpc, self.subnets, self.web_sg, self.db_sg = vpc, subnets, web_sg, db_sg
        web1 = self.web_instance(1, subnets[("public", "a")])

        self.rds.create_db_subnet_group(DBSubnetGroupName=f"{self.prefix}-db", DBSubnetGroupDescription="private subnets",
                                        SubnetIds=[subnets[("private", z)] for z in "ab"],
                                        Tags=tag_list({**self.tags, "Name": f"{self.prefix}-db", "Role": "database"}))
        self.rds.create_db_instance(
            DBInstanceIdentifier=f"{self.prefix}-db", Engine="postgres", EngineVersion="16.11", DBInstanceClass="db.t4g.micro",
            AllocatedStorage=20, MasterUsername="togglemaster", MasterUserPassword="not-a-secret-1",
            DBSubnetGroupName=f"{self.prefix}-db", VpcSecurityGroupIds=[db_sg], AvailabilityZone=f"{REGION}a",
            PubliclyAccessible=False, StorageEncrypted=True,
            Tags=tag_list({**self.tags, "Name": f"{self.prefix}-db", "Role": "database"}))
        self.ids = {
            "vpcs": [vpc], "subnets": sorted(subnets.values()), "internet_gateways": [igw],
            "route_tables": sorted(tables.values()), "security_groups": sorted([web_sg, db_sg]),
            "instances": [web1], "db_instances": [f"{self.prefix}-db"],
        }
        return self

    def web_instance(self, number: int, subnet: str) -> str:
        image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        return self.ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet, SecurityGroupIds=[self.web_sg],
            TagSpecifications=self.tagged("instance", f"{self.prefix}-web-{number}", Role="web", LoginUser="admin"),
        )["Instances"][0]["InstanceId"]

    def make_ha(self) -> "Environment":
        """aws_security_groups with the load balancer group, a second web instance, aws_load_balancer."""
        ec2 = self.ec2
        lb_sg = ec2.create_security_group(GroupName=f"{self.prefix}-lb", Description="HTTP/HTTPS from anywhere", VpcId=self.vpc,
                                          TagSpecifications=self.tagged("security-group", f"{self.prefix}-lb",
                                                                        Role="load-balancer"))["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=lb_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in (80, 443)])
        # The web group then takes HTTP from the load balancer's group alone.
        ec2.revoke_security_group_ingress(GroupId=self.web_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in (80, 443)])
        ec2.authorize_security_group_ingress(GroupId=self.web_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": lb_sg}]}])
        web2 = self.web_instance(2, self.subnets[("public", "b")])
        lb = self.elbv2.create_load_balancer(
            Name=self.prefix, Subnets=[self.subnets[("public", z)] for z in "ab"], SecurityGroups=[lb_sg],
            Scheme="internet-facing", Type="application", Tags=tag_list({**self.tags, "Name": self.prefix}))["LoadBalancers"][0]
        tg = self.elbv2.create_target_group(
            Name=f"{self.prefix}-web", Protocol="HTTP", Port=80, VpcId=self.vpc, HealthCheckPath="/ready",
            Tags=tag_list({**self.tags, "Name": f"{self.prefix}-web"}))["TargetGroups"][0]
        self.elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
        self.elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"],
                                    Targets=[{"Id": i, "Port": 80} for i in self.ids["instances"] + [web2]])
        self.lb_arn_suffix = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
        self.lb_sg = lb_sg
        self.ids["instances"] = sorted(self.ids["instances"] + [web2])
        self.ids["security_groups"] = sorted(self.ids["security_groups"] + [lb_sg])
        self.ids["load_balancers"] = [self.prefix]
        self.ids["target_groups"] = [f"{self.prefix}-web"]
        return self


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The inventories and the environments' state folders, kept from one test to the next."""
    return tmp_path_factory.mktemp("diagram")


@pytest.fixture(scope="module")
def diagram(moto_endpoint, workdir):
    """Runs playbooks/diagram.yml for an environment through an inventory of its own that points at
    the emulator; returns (stats of the control host, the drawing task's result, the tasks that changed or failed)."""

    def run(env_name: str, *args: str) -> tuple[dict, dict, str]:
        inventory = workdir / f"{env_name}.yml"
        # Host variables: they beat playbooks/group_vars/all, as an environment's group_vars do.
        inventory.write_text(yaml.safe_dump({env_name: {"children": {"control": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"),
            "env_name": env_name, "aws_endpoint_url": moto_endpoint,
            "aws_access_key": "testing", "aws_secret_key": "testing",
            "state_dir": str(workdir / "state" / env_name),
        }}}}}}))
        env = {**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": "deploy_lock"}
        out = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/diagram.yml"), *args],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.stdout.startswith("{"), out.stdout + out.stderr
        report = json.loads(out.stdout)
        tasks = [(task["task"]["name"], task["hosts"]["localhost"]) for play in report["plays"] for task in play["tasks"]
                 if "localhost" in task["hosts"]]
        drawn = [result for name, result in tasks if name.endswith("Architecture is drawn")]
        # What a reader needs from a failed assertion: each task that changed or failed, and why.
        summary = "\n".join(f"{name}: changed={result.get('changed')} failed={result.get('failed', False)} {result.get('msg', '')}"
                            for name, result in tasks if result.get("changed") or result.get("failed"))
        return report["stats"]["localhost"], (drawn[0] if drawn else {}), summary + out.stderr

    return run


def svg_texts(path: Path) -> tuple[str, dict[str, str]]:
    """All the SVG's text, and each edge's label by its title (source->target)."""
    root = ET.parse(path).getroot()
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    edges = {}
    for group in root.iter(f"{SVG_NS}g"):
        if group.get("class") == "edge":
            title = group.find(f"{SVG_NS}title").text
            edges[title] = " ".join(t.text or "" for t in group.iter(f"{SVG_NS}text"))
    return texts, edges


def edge_ports(label: str) -> set[str]:
    return set(re.findall(r"\b\d+\b", label.split("sg-")[0]))


@pytest.fixture(scope="module")
def environment(moto_endpoint) -> Environment:
    """The environment the tests below draw, in file order: topology single, then ha."""
    return Environment(moto_endpoint, "diagtest").single()


@pytest.fixture(scope="module")
def other_environment(moto_endpoint) -> Environment:
    """Another environment in the same account and region: none of it may be drawn."""
    return Environment(moto_endpoint, "diagother", cidr_prefix="10.1").single()


def drawing(workdir: Path) -> Path:
    return workdir / "state" / "diagtest"


def test_check_mode_draws_nothing_on_disk(environment, diagram, workdir):
    stats, result, out = diagram("diagtest", "--check")
    assert (stats["failures"], stats["changed"]) == (0, 1), "check mode says the files would be written\n" + out
    assert sorted(result["resource_ids"]["instances"]) == environment.ids["instances"]
    assert not drawing(workdir).exists()


def test_the_drawing_shows_every_resource_and_the_flows_its_groups_allow(environment, other_environment, diagram, workdir):
    env = environment
    stats, result, out = diagram("diagtest")
    assert (stats["failures"], stats["changed"]) == (0, 1), out

    png, svg = drawing(workdir) / "architecture.png", drawing(workdir) / "architecture.svg"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    texts, edges = svg_texts(svg)
    raw = svg.read_text()
    for kind, ids in env.ids.items():
        assert sorted(result["resource_ids"][kind]) == sorted(ids), kind
        for resource_id in ids:
            assert resource_id in texts, f"{kind} {resource_id} is not in the drawing"
            assert resource_id in raw, f"{resource_id} cannot be found with grep"
    for ids in other_environment.ids.values():
        for resource_id in ids:
            assert resource_id not in raw, f"{resource_id} of another environment is drawn"
    assert "load_balancers" not in result["resource_ids"]
    assert result["public_subnets"] == sorted(env.subnets[("public", z)] for z in "ab")
    assert re.search(r'href="(?!data:)', raw) is None, "the icons are embedded, the SVG stands alone"

    (web1,) = env.ids["instances"]
    db = env.ids["db_instances"][0]
    assert edge_ports(edges[f"internet->{web1}"]) == {"80", "443"}
    assert env.web_sg in edges[f"internet->{web1}"]
    assert edge_ports(edges[f"{ADMIN_CIDR}->{web1}"]) == {"22"}
    assert edge_ports(edges[f"{web1}->{db}"]) == {"5432"}
    assert env.db_sg in edges[f"{web1}->{db}"]
    assert f"internet->{db}" not in edges and f"{ADMIN_CIDR}->{db}" not in edges


def test_a_second_run_over_the_same_resources_changes_nothing(environment, diagram, workdir):
    files = sorted(drawing(workdir).iterdir())
    assert [f.name for f in files] == ["architecture.png", "architecture.svg"]
    before = [f.read_bytes() for f in files]

    stats, _, out = diagram("diagtest")
    assert (stats["failures"], stats["changed"]) == (0, 0), out
    assert [f.read_bytes() for f in files] == before
    stats, _, out = diagram("diagtest", "--check")
    assert (stats["failures"], stats["changed"]) == (0, 0), out


def test_the_ha_topology_adds_the_load_balancer_and_the_second_host(environment, diagram, workdir):
    env = environment.make_ha()
    stats, result, out = diagram("diagtest")
    assert (stats["failures"], stats["changed"]) == (0, 1), "what changed in AWS redraws the files\n" + out
    texts, edges = svg_texts(drawing(workdir) / "architecture.svg")
    for kind, ids in env.ids.items():
        assert sorted(result["resource_ids"][kind]) == sorted(ids), kind
        for resource_id in ids:
            assert resource_id in texts, f"{kind} {resource_id} is not in the drawing"
    assert env.lb_arn_suffix in texts
    assert "HTTP:80" in texts, "the listener"

    lb, db = env.prefix, env.ids["db_instances"][0]
    assert edge_ports(edges[f"internet->{lb}"]) == {"80", "443"}
    for web in env.ids["instances"]:
        assert edge_ports(edges[f"{lb}->{web}"]) == {"80"}
        assert env.web_sg in edges[f"{lb}->{web}"]
        assert edge_ports(edges[f"{ADMIN_CIDR}->{web}"]) == {"22"}
        assert edge_ports(edges[f"{web}->{db}"]) == {"5432"}
        assert f"internet->{web}" not in edges, "the web group no longer admits the internet"


def test_an_environment_with_nothing_in_aws_is_refused_with_its_tags(diagram):
    stats, _, out = diagram("diagnothing")
    assert stats["failures"] == 1
    assert "No VPC tagged Project=togglemaster Environment=diagnothing" in out
