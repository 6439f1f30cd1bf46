"""What a user would check in the AWS console after provisioning, through the emulated API."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

from conftest import ENVIRONMENT, PROJECT, SCENARIO_DIR, STATE_DIR, REPO_DIR, egress, ingress, run_ansible, venv_bin


OUTPUTS = f"/{PROJECT}/{ENVIRONMENT}/outputs"
SECRETS = f"/{PROJECT}/{ENVIRONMENT}/secrets"


@pytest.fixture(scope="module")
def outputs(aws) -> dict:
    """What provisioning recorded for later runs, in SSM Parameter Store (not on this laptop)."""
    return json.loads(aws("ssm").get_parameter(Name=OUTPUTS)["Parameter"]["Value"])


@pytest.fixture(scope="module")
def ec2(aws):
    return aws("ec2")


@pytest.fixture(scope="module")
def rds(aws):
    return aws("rds")


@pytest.fixture(scope="module")
def vpc(ec2, env_filters):
    vpcs = ec2.describe_vpcs(Filters=env_filters)["Vpcs"]
    assert len(vpcs) == 1, vpcs
    return vpcs[0]


def subnets_by_tier(ec2, vpc_id: str, tier: str) -> list[dict]:
    return ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "tag:Tier", "Values": [tier]},
    ])["Subnets"]


def test_vpc_has_the_configured_cidr_and_tags(vpc, group_vars):
    assert vpc["CidrBlock"] == group_vars.get("aws_network_vpc_cidr", "10.20.0.0/16")
    tags = {t["Key"]: t["Value"] for t in vpc["Tags"]}
    assert tags["Project"] == PROJECT and tags["Environment"] == ENVIRONMENT and tags["ManagedBy"] == "ansible"


@pytest.mark.parametrize("tier", ["public", "private"])
def test_subnets_of_each_tier_span_two_availability_zones(ec2, vpc, tier):
    subnets = subnets_by_tier(ec2, vpc["VpcId"], tier)
    assert len({s["AvailabilityZone"] for s in subnets}) >= 2
    assert all(s["MapPublicIpOnLaunch"] == (tier == "public") for s in subnets)


def test_subnets_default_to_the_first_two_zones_the_region_reports(ec2, vpc):
    available = sorted(z["ZoneName"] for z in ec2.describe_availability_zones(
        Filters=[{"Name": "state", "Values": ["available"]}])["AvailabilityZones"])
    for tier in ("public", "private"):
        assert [s["AvailabilityZone"] for s in sorted(subnets_by_tier(ec2, vpc["VpcId"], tier), key=lambda s: s["CidrBlock"])] == available[:2]


def test_public_route_table_sends_the_default_route_to_the_internet_gateway(ec2, vpc):
    igws = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])
    igw_id = igws["InternetGateways"][0]["InternetGatewayId"]
    public_ids = {s["SubnetId"] for s in subnets_by_tier(ec2, vpc["VpcId"], "public")}
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": sorted(public_ids)}])
    assert len(tables["RouteTables"]) == 1
    routes = tables["RouteTables"][0]["Routes"]
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId") == igw_id for r in routes)


def test_private_subnets_share_one_route_table_without_a_default_route(ec2, vpc):
    private_ids = [s["SubnetId"] for s in subnets_by_tier(ec2, vpc["VpcId"], "private")]
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": private_ids}])
    assert len(tables["RouteTables"]) == 1, "the private subnets must share one route table"
    table = tables["RouteTables"][0]
    assert sorted(a["SubnetId"] for a in table["Associations"] if a.get("SubnetId")) == sorted(private_ids)
    for route in table["Routes"]:
        assert route.get("DestinationCidrBlock") != "0.0.0.0/0"
        assert route.get("GatewayId", "local") == "local"


def test_web_security_group_rules_are_exactly_the_declared_ones(ec2, outputs, group_vars):
    web = ec2.describe_security_groups(GroupIds=[outputs["web_security_group_id"]])["SecurityGroups"][0]
    admins = group_vars["admin_cidr"]
    assert len(admins) == 2, "the scenario gives admin_cidr as a list of two"
    assert ingress(web) == {
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        *{("tcp", 22, 22, admin) for admin in admins},
    }
    assert egress(web) == {
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 5432, 5432, outputs["db_security_group_id"]),
    }


def test_each_admin_cidr_gets_its_own_ssh_rule(ec2, outputs, group_vars):
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [outputs["web_security_group_id"]]}])["SecurityGroupRules"]
    ssh = [r for r in rules if not r["IsEgress"] and r["FromPort"] == 22]
    assert sorted(r["CidrIpv4"] for r in ssh) == sorted(group_vars["admin_cidr"])


def test_database_security_group_accepts_postgres_from_the_web_group_only(ec2, outputs):
    db = ec2.describe_security_groups(GroupIds=[outputs["db_security_group_id"]])["SecurityGroups"][0]
    assert ingress(db) == {("tcp", 5432, 5432, outputs["web_security_group_id"])}
    assert egress(db) == set()


@pytest.mark.parametrize(("output", "role"), [("web_security_group_id", "web"), ("db_security_group_id", "database")])
def test_each_security_group_carries_its_own_role_tags(ec2, outputs, output, role):
    group = ec2.describe_security_groups(GroupIds=[outputs[output]])["SecurityGroups"][0]
    tags = {t["Key"]: t["Value"] for t in group["Tags"]}
    assert tags["Role"] == role and tags["Name"] == group["GroupName"]
    assert tags["Project"] == PROJECT and tags["Environment"] == ENVIRONMENT


def test_database_is_private_encrypted_and_in_the_private_subnet_group(rds, ec2, vpc, outputs):
    db = rds.describe_db_instances(DBInstanceIdentifier=outputs["rds_identifier"])["DBInstances"][0]
    assert db["Engine"] == "postgres" and db["EngineVersion"].startswith("16.")
    assert db["DBInstanceClass"] == "db.t4g.micro"
    assert db["AllocatedStorage"] == 20 and db["StorageType"] == "gp3"
    assert db["StorageEncrypted"] is True
    assert db["PubliclyAccessible"] is False
    assert db["BackupRetentionPeriod"] == 7
    assert db["DeletionProtection"] is True  # the scenario turns it on, as production does
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [outputs["db_security_group_id"]]
    private = {s["SubnetId"] for s in subnets_by_tier(ec2, vpc["VpcId"], "private")}
    group_subnets = {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]}
    assert group_subnets == private
    assert db["Endpoint"]["Address"] == outputs["rds_endpoint"] and db["Endpoint"]["Port"] == outputs["rds_port"]


def test_web_instances_require_imdsv2_and_have_encrypted_gp3_roots_and_tags(ec2, vpc, outputs, group_vars):
    public = {s["SubnetId"] for s in subnets_by_tier(ec2, vpc["VpcId"], "public")}
    ids = [i["id"] for i in outputs["web_instances"]]
    assert len(ids) == group_vars["aws_web_instance_count"]
    instances = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    assert {i["SubnetId"] for i in instances} == public  # spread over both public subnets
    for instance in instances:
        assert instance["State"]["Name"] == "running"
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["InstanceType"] == "t3.micro"
        assert instance.get("PublicIpAddress")
        assert instance["KeyName"] == outputs["key_name"]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["Project"] == PROJECT and tags["Environment"] == ENVIRONMENT
        assert tags["Role"] == "web" and tags["Name"].startswith(f"{PROJECT}-{ENVIRONMENT}-web-")
        root = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]]
        volume = ec2.describe_volumes(VolumeIds=[root[0]["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["Encrypted"] is True and volume["VolumeType"] == "gp3"


def test_web_instances_run_the_newest_debian_12_amd64_image(ec2, outputs):
    ids = [i["id"] for i in outputs["web_instances"]]
    images = {i["ImageId"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
    # files/amis.json offers an older Debian 12 and a newer arm64 one: the filter must pick this.
    assert images == {"ami-0d3b1e2c4a5f60712"}


def test_key_pair_is_the_generated_project_key_kept_private(ec2, outputs):
    pairs = ec2.describe_key_pairs(KeyNames=[outputs["key_name"]])["KeyPairs"]
    assert len(pairs) == 1
    private_key = STATE_DIR / "ssh" / "id_ed25519"
    assert stat.S_IMODE(private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_key.parent.stat().st_mode) == 0o700
    # A path on this laptop is nobody else's business: the shared outputs do not name it.
    assert "ssh_private_key_file" not in outputs


def test_outputs_are_kept_in_aws_and_match_the_api(aws, ec2, outputs, vpc):
    parameter = aws("ssm").get_parameter(Name=OUTPUTS)["Parameter"]
    assert parameter["Type"] == "String"
    assert not (STATE_DIR / "outputs.yml").exists()
    assert outputs["vpc_id"] == vpc["VpcId"]
    assert outputs["vpc_cidr"] == vpc["CidrBlock"]
    public = ec2.describe_subnets(SubnetIds=outputs["public_subnet_ids"])["Subnets"]
    by_id = {subnet["SubnetId"]: subnet["CidrBlock"] for subnet in public}
    assert outputs["public_subnet_cidrs"] == [by_id[i] for i in outputs["public_subnet_ids"]]
    assert outputs["ssh_user"] == "admin"
    ids = [i["id"] for i in outputs["web_instances"]]
    described = {
        i["InstanceId"]: i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]
    }
    for entry in outputs["web_instances"]:
        assert entry["public_ip"] == described[entry["id"]]["PublicIpAddress"]
        assert entry["public_dns"] == described[entry["id"]]["PublicDnsName"]
        assert entry["private_ip"] == described[entry["id"]]["PrivateIpAddress"]
    assert outputs["public_url"] == f"http://{outputs['web_instances'][0]['public_dns']}/"


def test_master_password_is_a_secure_parameter_and_nowhere_on_this_laptop(aws):
    stored = aws("ssm").get_parameter(Name=f"{SECRETS}/db_master_password", WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    password = stored["Value"]
    assert len(password) >= 16
    assert password not in aws("ssm").get_parameter(Name=OUTPUTS)["Parameter"]["Value"]
    on_disk = [p for p in STATE_DIR.rglob("*") if p.is_file()]
    assert not [p for p in on_disk if password in p.read_text(encoding="utf-8", errors="ignore")]


def discovered(tmp_path, env: str, *extra: str) -> dict[str, dict]:
    """The hosts playbooks/discover.yml adds to the run, as name -> groups, address and user."""
    playbook = tmp_path / "discovered.yml"
    playbook.write_text(
        "- ansible.builtin.import_playbook: " + str(REPO_DIR / "playbooks" / "discover.yml") + "\n"
        "- hosts: web\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n"
        "        content: \"{{ {'groups': group_names, 'host': ansible_host, 'user': ansible_user} | to_json }}\"\n"
        f"        dest: {tmp_path}/{{{{ inventory_hostname }}}}.json\n"
        "        mode: '0600'\n"
        "      delegate_to: localhost\n",
        encoding="utf-8",
    )
    result = run_ansible([venv_bin("ansible-playbook"), "-i", str(REPO_DIR / "inventories" / env), str(playbook), *extra])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in tmp_path.glob("*.json")}


def test_staging_hosts_are_found_by_tags_and_grouped_by_role(outputs, tmp_path):
    hosts = discovered(tmp_path, "staging")
    assert set(hosts) == {i["name"] for i in outputs["web_instances"]}
    for entry in outputs["web_instances"]:
        assert hosts[entry["name"]]["host"] == entry["public_ip"]
        assert hosts[entry["name"]]["user"] == "admin"
        assert "web" in hosts[entry["name"]]["groups"] and "staging" in hosts[entry["name"]]["groups"]


def test_host_discovery_looks_in_the_environments_region_only(outputs, tmp_path):
    assert discovered(tmp_path, "staging", "-e", "aws_region=us-east-1") == {}


def test_production_discovery_does_not_see_staging_hosts(tmp_path):
    assert discovered(tmp_path, "production") == {}
