#!/usr/bin/python
# -*- coding: utf-8 -*-
# Read-only AWS checks run before provisioning; amazon.aws has no module for these calls.
from __future__ import annotations

DOCUMENTATION = r"""
module: aws_preflight_info
short_description: Check an AWS region and account before provisioning anything
description:
  - Answers read-only questions that provisioning depends on, before anything is created.
  - Whether an EC2 instance type is offered in each of a list of availability zones.
  - Whether an RDS instance class is orderable for an engine and version, and in which zones.
  - Account headroom in the region, as numbers and not a verdict, for VPCs, Elastic IP
    addresses and running On-Demand standard instance vCPUs, each as the count in use and
    the quota, plus the vCPUs of the requested instance type.
  - Every answer carries a C(status). C(ok) means the endpoint answered.
    C(unavailable) means the endpoint could not answer (not implemented, unknown operation,
    an unreadable response, an HTTP 5xx, or for Service Quotas also access denied or no such
    quota) and comes with a one-line C(reason). An emulator such as moto gives such answers
    for several of these calls; the module reports them and does not fail.
  - Any other AWS error (bad credentials, an unknown instance type) fails the module.
  - The module never invents an answer. The only stand-in value is the documented AWS
    default of 5 VPCs per region when Service Quotas cannot answer, marked as such.
  - The module changes nothing and always returns C(changed=false).
author: ToggleMaster Deploy maintainers
options:
  instance_type:
    description:
      - The EC2 instance type to check, for example C(t3.small).
      - With O(zones), reports in which of those zones the type is offered.
      - With O(headroom), also reports the vCPUs the type counts against the vCPU quota.
    type: str
  zones:
    description:
      - Availability zone names in which to check that O(instance_type) is offered.
    type: list
    elements: str
  rds_instance_class:
    description:
      - The RDS instance class to check, for example C(db.t4g.micro).
      - When not given, no RDS check is made.
    type: str
  rds_engine:
    description:
      - The RDS engine the class must be orderable for.
    type: str
    default: postgres
  rds_engine_version:
    description:
      - The engine version the class must be orderable for.
      - A value without a dot is a major version (C(16)) and matches every C(16.x)
        version. A value with a dot is an exact version (C(16.3)) and is sent to RDS as is.
      - When not given, any version of O(rds_engine) matches.
    type: str
  headroom:
    description:
      - Which account headroom figures to report; an empty list reports none.
    type: list
    elements: str
    choices: [vpcs, elastic_ips, standard_vcpus]
    default: [vpcs, elastic_ips, standard_vcpus]
notes:
  - Needs C(ec2:DescribeInstanceTypeOfferings), C(ec2:DescribeInstanceTypes),
    C(ec2:DescribeInstances), C(ec2:DescribeVpcs), C(ec2:DescribeAddresses),
    C(ec2:DescribeAccountAttributes), C(rds:DescribeOrderableDBInstanceOptions) and
    C(servicequotas:GetServiceQuota).
  - Standard instances are the A, C, D, H, I, M, R, T and Z families, which share the quota
    C(L-1216C47A). Inf, Trn, DL, HPC and Mac types start with the same letters but have quotas
    of their own and are not counted.
  - vCPUs are counted as the default vCPUs of each instance type, as AWS counts them.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Check the region and account before provisioning
  aws_preflight_info:
    region: sa-east-1
    instance_type: t3.small
    zones: [sa-east-1a, sa-east-1b]
    rds_instance_class: db.t4g.micro
    rds_engine_version: "16"
  register: preflight

- name: Stop when the instance type is missing from a zone
  ansible.builtin.assert:
    that: preflight.instance_type_offerings.zones | dict2items | rejectattr('value') | list == []
    fail_msg: "{{ preflight.instance_type_offerings.zones }}"
  when: preflight.instance_type_offerings.status == 'ok'

- name: Stop when the new instance would pass the vCPU quota
  vars:
    __vcpus: "{{ preflight.headroom.standard_vcpus }}"
  ansible.builtin.assert:
    that: __vcpus.in_use.value + __vcpus.requested.value <= __vcpus.quota.value
  when: (__vcpus.values() | map(attribute='status') | unique) == ['ok']

- name: Check only the RDS class, against an emulator
  aws_preflight_info:
    endpoint_url: http://127.0.0.1:5050
    region: sa-east-1
    rds_instance_class: db.t4g.micro
    rds_engine_version: "16.3"
    headroom: []
"""

RETURN = r"""
instance_type_offerings:
  description: Where O(instance_type) is offered among O(zones).
  returned: when O(zones) is given
  type: dict
  contains:
    status:
      description: C(ok) or C(unavailable).
      type: str
      sample: ok
    reason:
      description: Why the endpoint could not answer.
      returned: when RV(instance_type_offerings.status=unavailable)
      type: str
    instance_type:
      description: The instance type checked.
      returned: when RV(instance_type_offerings.status=ok)
      type: str
      sample: t3.small
    zones:
      description: Each zone of O(zones) mapped to whether the type is offered there.
      returned: when RV(instance_type_offerings.status=ok)
      type: dict
      sample: {"sa-east-1a": true, "sa-east-1b": false}
rds_orderable:
  description: Whether O(rds_instance_class) is orderable for O(rds_engine) and O(rds_engine_version).
  returned: when O(rds_instance_class) is given
  type: dict
  contains:
    status:
      description:
        - C(ok) or C(unavailable).
        - C(unavailable) also when the endpoint lists no orderable options at all for the engine,
          which real RDS never does for a supported engine (moto does so for C(postgres)).
      type: str
      sample: ok
    reason:
      description: Why the endpoint could not answer.
      returned: when RV(rds_orderable.status=unavailable)
      type: str
    engine:
      description: The engine checked.
      returned: when RV(rds_orderable.status=ok)
      type: str
      sample: postgres
    engine_version:
      description: The version asked for, as given (null for any version).
      returned: when RV(rds_orderable.status=ok)
      type: str
      sample: "16"
    instance_class:
      description: The instance class checked.
      returned: when RV(rds_orderable.status=ok)
      type: str
      sample: db.t4g.micro
    orderable:
      description: Whether the class is orderable for a matching version.
      returned: when RV(rds_orderable.status=ok)
      type: bool
      sample: true
    engine_versions:
      description: The matching versions the class is orderable for, oldest first.
      returned: when RV(rds_orderable.status=ok)
      type: list
      elements: str
      sample: ["16.3", "16.4"]
    zones:
      description: The availability zones where the class is offered for those versions.
      returned: when RV(rds_orderable.status=ok)
      type: list
      elements: str
      sample: ["sa-east-1a", "sa-east-1c"]
headroom:
  description:
    - Account headroom in the region. Each figure is an answer of its own with a C(status),
      a C(value) when C(ok), and a C(reason) when C(unavailable).
    - Quotas also carry C(source) (C(service-quotas), C(account-attributes) or C(aws-default))
      and, when a fallback was used, a C(note) saying why.
  returned: when O(headroom) is not empty
  type: dict
  contains:
    vpcs:
      description: VPCs in the region (C(in_use)) and the VPCs per Region quota C(L-F678F1CE) (C(quota)).
      type: dict
      sample:
        in_use: {"status": "ok", "value": 1}
        quota: {"status": "ok", "value": 5, "source": "service-quotas", "quota_code": "L-F678F1CE"}
    elastic_ips:
      description:
        - Elastic IP addresses allocated (C(in_use)) and the quota C(L-0263D0A3) (C(quota)).
        - The quota falls back to the account attribute C(vpc-max-elastic-ips).
      type: dict
      sample:
        in_use: {"status": "ok", "value": 0}
        quota: {"status": "ok", "value": 5, "source": "account-attributes",
                "note": "Service Quotas could not answer (...)"}
    standard_vcpus:
      description:
        - vCPUs of pending and running standard instances (C(in_use), with the number of
          C(instances)) and the Running On-Demand Standard instances quota C(L-1216C47A) (C(quota)).
        - With O(instance_type), C(requested) gives its vCPUs (C(value)) and whether it is a
          standard type (C(standard_family)), that is whether it counts against this quota.
      type: dict
      sample:
        in_use: {"status": "ok", "value": 4, "instances": 2}
        quota: {"status": "unavailable", "reason": "GetServiceQuota: NoSuchResourceException (HTTP 400) ..."}
        requested: {"status": "ok", "value": 2, "instance_type": "t3.small", "standard_family": true}
"""

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError  # not a BotoCoreError
except ImportError:
    pass  # Reported by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

Result = dict[str, Any]
Client = Any  # a boto3 client

VPC_QUOTA = ("vpc", "L-F678F1CE")
ELASTIC_IP_QUOTA = ("ec2", "L-0263D0A3")
STANDARD_VCPU_QUOTA = ("ec2", "L-1216C47A")
DEFAULT_VPC_QUOTA = 5

# Error codes meaning "this endpoint cannot answer", whatever the service.
CANNOT_ANSWER = frozenset({"NotImplemented", "UnknownOperation", "UnknownOperationException", "InvalidAction"})
# Service Quotas may also be denied to a deploy role, or not know a quota in a region (moto's
# answer for the EC2 quotas); the figure is then unknown, which is not a reason to stop.
QUOTAS_CANNOT_ANSWER = frozenset({"AccessDenied", "AccessDeniedException", "NoSuchResourceException"})

STANDARD_FAMILY_LETTERS = frozenset("acdhimrtz")
# Families starting with a standard letter that have quotas of their own.
OTHER_QUOTA_PREFIXES = ("dl", "hpc", "inf", "mac", "trn")


# --- answers ---------------------------------------------------------------------------


def answered(**fields: Any) -> Result:
    return {"status": "ok", **fields}


def unavailable(reason: str) -> Result:
    return {"status": "unavailable", "reason": reason}


def one_line(text: str, limit: int = 200) -> str:
    """Collapse an error message (possibly an HTML page) to one short line."""
    flat = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def unavailable_reason(error: Exception, also: frozenset[str] = frozenset()) -> str | None:
    """Say why the endpoint could not answer, or None when the error is a real failure."""
    if isinstance(error, ResponseParserError):
        return "unreadable response: " + one_line(str(error).splitlines()[0])
    if not isinstance(error, ClientError):
        return None
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code not in CANNOT_ANSWER | also and status < 500:
        return None
    message = one_line(error.response.get("Error", {}).get("Message", ""))
    return f"{error.operation_name}: {code} (HTTP {status}) {message}".rstrip()


def reports_unavailable(also: frozenset[str] = frozenset()) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Turn a check's "cannot answer" errors into an unavailable answer; re-raise the rest."""

    def decorate(check: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> Result:
            try:
                return check(*args, **kwargs)
            except (BotoCoreError, ClientError, ResponseParserError) as error:
                reason = unavailable_reason(error, also)
                if reason is None:
                    raise
                return unavailable(reason)

        return run

    return decorate


# --- calls -----------------------------------------------------------------------------


@AWSRetry.jittered_backoff()
def paginate(client: Client, operation: str, key: str, **params: Any) -> list[dict]:
    return client.get_paginator(operation).paginate(**params).build_full_result().get(key, [])


@AWSRetry.jittered_backoff()
def call(client: Client, operation: str, **params: Any) -> dict:
    return getattr(client, operation)(**params)


# --- EC2 instance type -----------------------------------------------------------------


@reports_unavailable()
def instance_type_offerings(ec2: Client, instance_type: str, zones: list[str]) -> Result:
    """Whether the instance type is offered in each zone."""
    offers = paginate(
        ec2,
        "describe_instance_type_offerings",
        "InstanceTypeOfferings",
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}, {"Name": "location", "Values": zones}],
    )
    offered = {offer["Location"] for offer in offers}
    return answered(instance_type=instance_type, zones={zone: zone in offered for zone in zones})


def is_standard_family(instance_type: str) -> bool:
    family = instance_type.split(".")[0].lower()
    return family[:1] in STANDARD_FAMILY_LETTERS and not family.startswith(OTHER_QUOTA_PREFIXES)


def default_vcpus(ec2: Client, instance_types: set[str]) -> dict[str, int]:
    """The default vCPUs of each instance type that EC2 knows."""
    names = sorted(instance_types)
    found: dict[str, int] = {}
    for start in range(0, len(names), 100):  # DescribeInstanceTypes takes up to 100 names
        for info in paginate(ec2, "describe_instance_types", "InstanceTypes", InstanceTypes=names[start : start + 100]):
            found[info["InstanceType"]] = info["VCpuInfo"]["DefaultVCpus"]
    return found


@reports_unavailable()
def instance_type_vcpus(ec2: Client, instance_type: str) -> Result:
    vcpus = default_vcpus(ec2, {instance_type})
    if instance_type not in vcpus:
        return unavailable(f"DescribeInstanceTypes returned nothing for {instance_type}")
    return answered(
        value=vcpus[instance_type], instance_type=instance_type, standard_family=is_standard_family(instance_type)
    )


# --- RDS instance class ----------------------------------------------------------------


def is_exact_version(version: str | None) -> bool:
    return version is not None and "." in version


def version_matches(version: str, wanted: str | None) -> bool:
    return wanted is None or version == wanted or version.startswith(wanted + ".")


def version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"[.-]", version))


def engine_has_options(rds: Client, engine: str) -> bool:
    """Whether the endpoint lists any orderable option at all for the engine."""
    page = call(rds, "describe_orderable_db_instance_options", Engine=engine, MaxRecords=20)
    return bool(page.get("OrderableDBInstanceOptions"))


@reports_unavailable()
def rds_orderable(rds: Client, engine: str, version: str | None, instance_class: str) -> Result:
    """Whether the class is orderable for the engine and version, and in which zones."""
    params = {"Engine": engine, "DBInstanceClass": instance_class}
    if is_exact_version(version):
        params["EngineVersion"] = version
    options = paginate(rds, "describe_orderable_db_instance_options", "OrderableDBInstanceOptions", **params)
    # An empty answer means "not orderable" only if the endpoint knows the engine at all.
    if not options and not engine_has_options(rds, engine):
        return unavailable(f"the endpoint lists no orderable options at all for engine {engine}")
    # Filter here too: an endpoint may ignore DBInstanceClass (moto does).
    matching = [
        option
        for option in options
        if option["DBInstanceClass"] == instance_class and version_matches(option["EngineVersion"], version)
    ]
    return answered(
        engine=engine,
        engine_version=version,
        instance_class=instance_class,
        orderable=bool(matching),
        engine_versions=sorted({option["EngineVersion"] for option in matching}, key=version_key),
        zones=sorted({zone["Name"] for option in matching for zone in option.get("AvailabilityZones", [])}),
    )


# --- account headroom ------------------------------------------------------------------


@reports_unavailable(QUOTAS_CANNOT_ANSWER)
def service_quota(quotas: Client, service_code: str, quota_code: str) -> Result:
    quota = call(quotas, "get_service_quota", ServiceCode=service_code, QuotaCode=quota_code)["Quota"]
    return answered(value=int(quota["Value"]), source="service-quotas", quota_code=quota_code)


def vpc_quota(quotas: Client) -> Result:
    quota = service_quota(quotas, *VPC_QUOTA)
    if quota["status"] == "ok":
        return quota
    note = f"Service Quotas could not answer ({quota['reason']}); {DEFAULT_VPC_QUOTA} is the AWS default"
    return answered(value=DEFAULT_VPC_QUOTA, source="aws-default", note=note)


@reports_unavailable()
def elastic_ip_attribute(ec2: Client) -> Result:
    attributes = call(ec2, "describe_account_attributes", AttributeNames=["vpc-max-elastic-ips"])
    values = [
        value["AttributeValue"]
        for attribute in attributes.get("AccountAttributes", [])
        if attribute["AttributeName"] == "vpc-max-elastic-ips"
        for value in attribute.get("AttributeValues", [])
    ]
    if not values:
        return unavailable("DescribeAccountAttributes returned no vpc-max-elastic-ips")
    return answered(value=int(values[0]), source="account-attributes")


def elastic_ip_quota(quotas: Client, ec2: Client) -> Result:
    quota = service_quota(quotas, *ELASTIC_IP_QUOTA)
    if quota["status"] == "ok":
        return quota
    attribute = elastic_ip_attribute(ec2)
    if attribute["status"] == "ok":
        return {**attribute, "note": f"Service Quotas could not answer ({quota['reason']})"}
    return unavailable(f"Service Quotas: {quota['reason']}; account attributes: {attribute['reason']}")


@reports_unavailable()
def vpcs_in_use(ec2: Client) -> Result:
    return answered(value=len(paginate(ec2, "describe_vpcs", "Vpcs")))


@reports_unavailable()
def elastic_ips_in_use(ec2: Client) -> Result:
    return answered(value=len(call(ec2, "describe_addresses").get("Addresses", [])))


@reports_unavailable()
def standard_vcpus_in_use(ec2: Client) -> Result:
    """vCPUs of the pending and running instances of the standard families."""
    reservations = paginate(
        ec2,
        "describe_instances",
        "Reservations",
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}],
    )
    types = [
        instance["InstanceType"]
        for reservation in reservations
        for instance in reservation.get("Instances", [])
        if is_standard_family(instance["InstanceType"])
    ]
    vcpus = default_vcpus(ec2, set(types)) if types else {}
    unknown = sorted(set(types) - set(vcpus))
    if unknown:
        return unavailable(f"DescribeInstanceTypes returned nothing for {', '.join(unknown)}")
    return answered(value=sum(vcpus[name] for name in types), instances=len(types))


HEADROOM_FIGURES = ("vpcs", "elastic_ips", "standard_vcpus")


def headroom(
    ec2: Client, quotas: Client, instance_type: str | None, figures: Iterable[str] = HEADROOM_FIGURES
) -> Result:
    result: Result = {}
    if "vpcs" in figures:
        result["vpcs"] = {"in_use": vpcs_in_use(ec2), "quota": vpc_quota(quotas)}
    if "elastic_ips" in figures:
        result["elastic_ips"] = {"in_use": elastic_ips_in_use(ec2), "quota": elastic_ip_quota(quotas, ec2)}
    if "standard_vcpus" in figures:
        vcpus = {"in_use": standard_vcpus_in_use(ec2), "quota": service_quota(quotas, *STANDARD_VCPU_QUOTA)}
        if instance_type:
            vcpus["requested"] = instance_type_vcpus(ec2, instance_type)
        result["standard_vcpus"] = vcpus
    return result


# --- module ----------------------------------------------------------------------------


def preflight(module: AnsibleAWSModule) -> Result:
    params = module.params
    result: Result = {}
    if params["zones"]:
        result["instance_type_offerings"] = instance_type_offerings(
            module.client("ec2"), params["instance_type"], params["zones"]
        )
    if params["rds_instance_class"]:
        result["rds_orderable"] = rds_orderable(
            module.client("rds"), params["rds_engine"], params["rds_engine_version"], params["rds_instance_class"]
        )
    if params["headroom"]:
        result["headroom"] = headroom(
            module.client("ec2"), module.client("service-quotas"), params["instance_type"], params["headroom"]
        )
    return result


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_type=dict(type="str"),
            zones=dict(type="list", elements="str"),
            rds_instance_class=dict(type="str"),
            rds_engine=dict(type="str", default="postgres"),
            rds_engine_version=dict(type="str"),
            headroom=dict(type="list", elements="str", choices=list(HEADROOM_FIGURES), default=list(HEADROOM_FIGURES)),
        ),
        required_by={"zones": "instance_type", "rds_engine_version": "rds_instance_class"},
        supports_check_mode=True,
    )
    try:
        result = preflight(module)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg="A preflight query failed")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
