"""The aws_preflight_info module: its checks against stubbed AWS answers, then the module
through `ansible` against the moto emulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from conftest import BIN, FAKE_KEYS, HTML_500, ROOT, load_source, module_env

REGION = "sa-east-1"


preflight = load_source("plugins/modules/aws_preflight_info.py")


def client(service: str):
    # No botocore retries: an HTTP 500 must be answered once, not retried with sleeps.
    return boto3.client(service, region_name=REGION, config=Config(retries={"total_max_attempts": 1}), **FAKE_KEYS)


@pytest.fixture
def stubbed():
    """Make a client whose calls are answered by a Stubber; check every stub was used."""
    stubbers = []

    def make(service: str):
        made = client(service)
        stubber = Stubber(made)
        stubber.activate()
        stubbers.append(stubber)
        return made, stubber

    yield make
    for stubber in stubbers:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def answer_every_request_with(made, status: int, body: bytes) -> None:
    """Make the client receive this raw HTTP answer, as moto gives for what it lacks."""

    class Raw:
        def stream(self, **_kwargs):
            yield body

    def send(request, **_kwargs):
        return AWSResponse(request.url, status, {"Content-Type": "text/html"}, Raw())

    made.meta.events.register("before-send", send)


def rds_option(version: str, instance_class: str = "db.t4g.micro", zones: tuple[str, ...] = ("sa-east-1a",)) -> dict:
    return {
        "Engine": "postgres",
        "EngineVersion": version,
        "DBInstanceClass": instance_class,
        "AvailabilityZones": [{"Name": zone} for zone in zones],
    }


def quota(code: str, value: float) -> dict:
    return {"Quota": {"QuotaCode": code, "Value": value}}


# --- instance type offerings --------------------------------------------------------------


def test_instance_type_is_offered_in_one_zone_and_not_the_other(stubbed):
    ec2, stub = stubbed("ec2")
    filters = [
        {"Name": "instance-type", "Values": ["t3.small"]},
        {"Name": "location", "Values": ["sa-east-1a", "sa-east-1b"]},
    ]
    asked = {"LocationType": "availability-zone", "Filters": filters}
    offer = {"InstanceType": "t3.small", "LocationType": "availability-zone", "Location": "sa-east-1a"}
    stub.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [], "NextToken": "page2"}, asked)
    stub.add_response(
        "describe_instance_type_offerings", {"InstanceTypeOfferings": [offer]}, {**asked, "NextToken": "page2"}
    )

    result = preflight.instance_type_offerings(ec2, "t3.small", ["sa-east-1a", "sa-east-1b"])

    assert result == {
        "status": "ok",
        "instance_type": "t3.small",
        "zones": {"sa-east-1a": True, "sa-east-1b": False},
    }


# --- RDS orderable --------------------------------------------------------------------------


def test_class_orderable_only_for_another_major_is_not_orderable(stubbed):
    rds, stub = stubbed("rds")
    # A major version is not sent: RDS wants exact versions; the module filters by prefix.
    stub.add_response(
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": [rds_option("15.7"), rds_option("17.2")]},
        {"Engine": "postgres", "DBInstanceClass": "db.t4g.micro"},
    )

    result = preflight.rds_orderable(rds, "postgres", "16", "db.t4g.micro")

    assert result["status"] == "ok"
    assert result["orderable"] is False
    assert result["engine_versions"] == []
    assert result["zones"] == []


def test_class_orderable_for_the_major_lists_its_versions_and_zones(stubbed):
    rds, stub = stubbed("rds")
    options = [
        rds_option("16.10", zones=("sa-east-1b",)),
        rds_option("16.3", zones=("sa-east-1a", "sa-east-1b")),
        rds_option("15.7", zones=("sa-east-1c",)),
        rds_option("16.4", instance_class="db.r6g.large", zones=("sa-east-1c",)),  # a class RDS should not send
    ]
    stub.add_response("describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": options})

    result = preflight.rds_orderable(rds, "postgres", "16", "db.t4g.micro")

    assert result == {
        "status": "ok",
        "engine": "postgres",
        "engine_version": "16",
        "instance_class": "db.t4g.micro",
        "orderable": True,
        "engine_versions": ["16.3", "16.10"],
        "zones": ["sa-east-1a", "sa-east-1b"],
    }


def test_exact_version_is_asked_of_rds_and_paginated(stubbed):
    rds, stub = stubbed("rds")
    asked = {"Engine": "postgres", "EngineVersion": "16.3", "DBInstanceClass": "db.t4g.micro"}
    stub.add_response(
        "describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": [], "Marker": "m1"}, asked
    )
    stub.add_response(
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": [rds_option("16.3")]},
        {**asked, "Marker": "m1"},
    )

    result = preflight.rds_orderable(rds, "postgres", "16.3", "db.t4g.micro")

    assert (result["orderable"], result["engine_versions"]) == (True, ["16.3"])


def test_empty_answer_for_a_known_engine_means_not_orderable(stubbed):
    rds, stub = stubbed("rds")
    stub.add_response("describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": []})
    stub.add_response(
        "describe_orderable_db_instance_options",
        {"OrderableDBInstanceOptions": [rds_option("16.3", instance_class="db.m7g.large")]},
        {"Engine": "postgres", "MaxRecords": 20},
    )

    result = preflight.rds_orderable(rds, "postgres", "16", "db.t1.micro")

    assert (result["status"], result["orderable"]) == ("ok", False)


def test_endpoint_without_options_for_the_engine_is_unavailable(stubbed):
    # moto's answer for postgres: no orderable options at all, for any class.
    rds, stub = stubbed("rds")
    stub.add_response("describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": []})
    stub.add_response("describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": []})

    result = preflight.rds_orderable(rds, "postgres", "16", "db.t4g.micro")

    assert result == {
        "status": "unavailable",
        "reason": "the endpoint lists no orderable options at all for engine postgres",
    }


def test_unreadable_rds_answer_is_unavailable():
    # moto answers actions it lacks with an HTML 500 page, which the RDS XML parser rejects.
    rds = client("rds")
    answer_every_request_with(rds, 500, HTML_500)

    result = preflight.rds_orderable(rds, "postgres", "16", "db.t4g.micro")

    assert result["status"] == "unavailable"
    assert result["reason"].startswith("unreadable response: Unable to parse response")
    assert "\n" not in result["reason"]


# --- quotas ---------------------------------------------------------------------------------


def test_vpc_quota_comes_from_service_quotas(stubbed):
    quotas, stub = stubbed("service-quotas")
    stub.add_response("get_service_quota", quota("L-F678F1CE", 20.0), {"ServiceCode": "vpc", "QuotaCode": "L-F678F1CE"})

    assert preflight.vpc_quota(quotas) == {
        "status": "ok",
        "value": 20,
        "source": "service-quotas",
        "quota_code": "L-F678F1CE",
    }


def test_vpc_quota_falls_back_to_the_aws_default_when_access_is_denied(stubbed):
    quotas, stub = stubbed("service-quotas")
    stub.add_client_error("get_service_quota", "AccessDeniedException", "not authorized", http_status_code=400)

    result = preflight.vpc_quota(quotas)

    assert (result["status"], result["value"], result["source"]) == ("ok", 5, "aws-default")
    assert "AccessDeniedException" in result["note"]


def test_vpc_quota_falls_back_to_the_aws_default_on_an_http_500():
    quotas = client("service-quotas")
    answer_every_request_with(quotas, 500, HTML_500)

    result = preflight.vpc_quota(quotas)

    assert (result["status"], result["value"], result["source"]) == ("ok", 5, "aws-default")
    assert "HTTP 500" in result["note"] and "<" not in result["note"]


def test_elastic_ip_quota_falls_back_to_the_account_attribute(stubbed):
    # NoSuchResourceException is moto's answer for the EC2 quotas.
    quotas, quota_stub = stubbed("service-quotas")
    ec2, ec2_stub = stubbed("ec2")
    quota_stub.add_client_error("get_service_quota", "NoSuchResourceException", "not in this Region")
    attributes = [
        {"AttributeName": "max-elastic-ips", "AttributeValues": [{"AttributeValue": "9"}]},
        {"AttributeName": "vpc-max-elastic-ips", "AttributeValues": [{"AttributeValue": "7"}]},
    ]
    ec2_stub.add_response(
        "describe_account_attributes", {"AccountAttributes": attributes}, {"AttributeNames": ["vpc-max-elastic-ips"]}
    )

    result = preflight.elastic_ip_quota(quotas, ec2)

    assert (result["status"], result["value"], result["source"]) == ("ok", 7, "account-attributes")
    assert "NoSuchResourceException" in result["note"]


def test_elastic_ip_quota_is_unavailable_when_neither_source_answers(stubbed):
    quotas, quota_stub = stubbed("service-quotas")
    ec2, ec2_stub = stubbed("ec2")
    quota_stub.add_client_error("get_service_quota", "NoSuchResourceException", "not in this Region")
    ec2_stub.add_client_error("describe_account_attributes", "InvalidAction", "not implemented")

    result = preflight.elastic_ip_quota(quotas, ec2)

    assert result["status"] == "unavailable"
    assert "NoSuchResourceException" in result["reason"] and "InvalidAction" in result["reason"]


def test_vcpu_quota_is_unavailable_when_service_quotas_does_not_know_it(stubbed):
    quotas, stub = stubbed("service-quotas")
    stub.add_client_error("get_service_quota", "NoSuchResourceException", "not in this Region")

    result = preflight.service_quota(quotas, "ec2", "L-1216C47A")

    assert result["status"] == "unavailable"
    assert result["reason"].startswith("GetServiceQuota: NoSuchResourceException (HTTP 400)")
    assert "value" not in result


def test_vcpu_quota_is_read_from_service_quotas(stubbed):
    quotas, stub = stubbed("service-quotas")
    stub.add_response("get_service_quota", quota("L-1216C47A", 32.0), {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"})

    assert preflight.service_quota(quotas, "ec2", "L-1216C47A")["value"] == 32


# --- usage ----------------------------------------------------------------------------------


STANDARD = ["t3.micro", "m7g.large", "i4i.xlarge", "d3en.xlarge", "z1d.large", "a1.medium", "h1.2xlarge"]
# Same first letters, quotas of their own; and families of other letters.
NOT_STANDARD = ["inf1.xlarge", "trn1.2xlarge", "dl1.24xlarge", "hpc6a.48xlarge", "mac1.metal", "g5.xlarge"]


@pytest.mark.parametrize(
    ("instance_type", "standard"), [(t, True) for t in STANDARD] + [(t, False) for t in NOT_STANDARD]
)
def test_standard_families_are_those_of_the_standard_vcpu_quota(instance_type, standard):
    assert preflight.is_standard_family(instance_type) is standard


def test_vcpus_in_use_count_pending_and_running_standard_instances(stubbed):
    ec2, stub = stubbed("ec2")
    running = {"Name": "instance-state-name", "Values": ["pending", "running"]}
    reservations = [
        {"Instances": [{"InstanceType": "t3.micro"}, {"InstanceType": "g5.xlarge"}]},
        {"Instances": [{"InstanceType": "m5.xlarge"}, {"InstanceType": "t3.micro"}]},
    ]
    stub.add_response("describe_instances", {"Reservations": reservations}, {"Filters": [running]})
    types = [
        {"InstanceType": "m5.xlarge", "VCpuInfo": {"DefaultVCpus": 4}},
        {"InstanceType": "t3.micro", "VCpuInfo": {"DefaultVCpus": 2}},
    ]
    stub.add_response("describe_instance_types", {"InstanceTypes": types}, {"InstanceTypes": ["m5.xlarge", "t3.micro"]})

    assert preflight.standard_vcpus_in_use(ec2) == {"status": "ok", "value": 8, "instances": 3}


def test_vcpus_of_the_requested_type_come_from_describe_instance_types(stubbed):
    ec2, stub = stubbed("ec2")
    stub.add_response(
        "describe_instance_types",
        {"InstanceTypes": [{"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4}}]},
        {"InstanceTypes": ["g5.xlarge"]},
    )

    assert preflight.instance_type_vcpus(ec2, "g5.xlarge") == {
        "status": "ok",
        "value": 4,
        "instance_type": "g5.xlarge",
        "standard_family": False,
    }


def test_a_real_error_is_raised_not_reported_unavailable(stubbed):
    ec2, stub = stubbed("ec2")
    stub.add_client_error("describe_instance_types", "InvalidInstanceType", "t3.nope does not exist")

    with pytest.raises(ClientError, match="InvalidInstanceType"):
        preflight.instance_type_vcpus(ec2, "t3.nope")


# --- the module through ansible, against moto --------------------------------------------------


def moto_client(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **FAKE_KEYS)


def run_module(endpoint: str, args: str, tmp_path: Path) -> dict:
    """Run the module ad hoc on localhost, in check mode, and return its result."""
    env = module_env(tmp_path)
    connection = f"endpoint_url={endpoint} region={REGION} access_key=testing secret_key=testing"
    command = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "--check"]
    command += ["-e", f"ansible_python_interpreter={BIN / 'python'}"]
    command += ["-m", "aws_preflight_info", "-a", f"{connection} {args}"]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if "{\n" not in out.stdout:
        pytest.fail(f"ansible printed no result (rc {out.returncode}):\n{out.stdout}\n{out.stderr}")
    # The project's profile_tasks callback prints around the JSON document.
    document = out.stdout[out.stdout.index("{\n") : out.stdout.rindex("\n}") + 2]
    return json.loads(document)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_module_reports_what_moto_answers_and_what_it_cannot(moto_endpoint, tmp_path):
    ec2 = moto_client(moto_endpoint, "ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for instance_type in ("t3.micro", "m5.large", "g4dn.xlarge"):
        ec2.run_instances(ImageId=image, InstanceType=instance_type, MinCount=1, MaxCount=1)
    ec2.allocate_address(Domain="vpc")

    result = run_module(
        moto_endpoint,
        "instance_type=t3.small zones=sa-east-1a,sa-east-1z rds_instance_class=db.t4g.micro rds_engine_version=16",
        tmp_path,
    )

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and not result.get("skipped")
    assert result["instance_type_offerings"] == {
        "status": "ok",
        "instance_type": "t3.small",
        "zones": {"sa-east-1a": True, "sa-east-1z": False},
    }
    # moto lists no orderable options for postgres at all: unknown, not "not orderable".
    assert result["rds_orderable"]["status"] == "unavailable"
    assert "no orderable options" in result["rds_orderable"]["reason"]
    headroom = result["headroom"]
    assert headroom["vpcs"]["in_use"] == {"status": "ok", "value": 1}  # moto's default VPC
    assert headroom["vpcs"]["quota"] == {
        "status": "ok",
        "value": 5,
        "source": "service-quotas",
        "quota_code": "L-F678F1CE",
    }
    assert headroom["elastic_ips"]["in_use"] == {"status": "ok", "value": 1}
    eip_quota = headroom["elastic_ips"]["quota"]
    assert (eip_quota["status"], eip_quota["value"], eip_quota["source"]) == ("ok", 5, "account-attributes")
    assert "NoSuchResourceException" in eip_quota["note"]
    vcpus = headroom["standard_vcpus"]
    assert vcpus["in_use"] == {"status": "ok", "value": 4, "instances": 2}  # t3.micro + m5.large, not g4dn
    assert vcpus["quota"]["status"] == "unavailable"
    assert "NoSuchResourceException" in vcpus["quota"]["reason"]
    assert vcpus["requested"] == {"status": "ok", "value": 2, "instance_type": "t3.small", "standard_family": True}


def test_module_fails_on_an_unknown_instance_type(moto_endpoint, tmp_path):
    result = run_module(moto_endpoint, "instance_type=t3.nope", tmp_path)

    assert result.get("failed") is True
    assert result["msg"].startswith("A preflight query failed")
    assert "InvalidInstanceType" in result["msg"]
