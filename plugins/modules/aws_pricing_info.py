#!/usr/bin/python
# -*- coding: utf-8 -*-
# Read-only look-up of On-Demand list prices in the AWS Price List Query API (GetProducts) for the
# cost estimate; amazon.aws has no module for the pricing service.
from __future__ import annotations

DOCUMENTATION = r"""
module: aws_pricing_info
short_description: Look up On-Demand list prices in the AWS Price List API
description:
  - Asks the AWS Price List Query API (C(GetProducts)) for the On-Demand USD price of each item
    the cost estimate uses, in one region each, and returns one answer per item in the order given.
  - Every answer carries a C(status). C(ok) comes with C(usd) and the C(source) it was read from
    (offer version, publication date and SKU). C(unavailable) comes with a one-line C(reason) and
    means the caller should take the price from its bundled price file.
  - An item is unavailable when the API cannot be asked (no credentials, access denied, an
    endpoint error or HTTP 5xx, as an emulator gives), when no product matches, when more than
    one distinct price matches (the answer says so rather than pick one), and for items the Price
    List API does not price (standard SSM parameters, AWS managed KMS keys, free allowances).
  - The pricing endpoint is asked in C(us-east-1) whatever O(region) says; O(endpoint_url), when
    given, is used instead.
  - The module never fails because of an answer of the API, and changes nothing.
author: ToggleMaster Deploy maintainers
options:
  items:
    description:
      - The prices to look up.
    type: list
    elements: dict
    required: true
    suboptions:
      item:
        description:
          - What to price, one of C(ec2_instance_hour), C(ebs_gp3_gb_month), C(public_ipv4_hour),
            C(rds_instance_hour), C(rds_gp3_gb_month), C(rds_backup_gb_month), C(alb_hour),
            C(alb_lcu_hour), C(kms_customer_key_month), C(data_transfer_out_gb); other names
            (C(ssm_parameter_standard_month), C(kms_aws_managed_key_month), allowances) come back
            unavailable.
        type: str
        required: true
      region:
        description:
          - The AWS region code the price is for, for example C(sa-east-1).
        type: str
        required: true
      key:
        description:
          - The variant. The instance type for C(ec2_instance_hour) (C(t3.micro)); C(<class>/single)
            or C(<class>/multi) for C(rds_instance_hour) (C(db.t4g.micro/multi)); C(single) or
            C(multi) for C(rds_gp3_gb_month); empty for the other items.
        type: str
        default: ""
notes:
  - Needs C(pricing:GetProducts).
  - EC2 instances are priced for Linux, shared tenancy, no pre-installed software, On-Demand
    (C(capacitystatus=Used), C(marketoption=OnDemand)); RDS instances and storage for PostgreSQL.
  - C(data_transfer_out_gb) is the first paid tier of data transfer out to the internet.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Look up the prices of a small deployment in Sao Paulo
  aws_pricing_info:
    items:
      - {item: ec2_instance_hour, region: sa-east-1, key: t3.small}
      - {item: rds_instance_hour, region: sa-east-1, key: db.t4g.micro/multi}
      - {item: alb_hour, region: sa-east-1}
  register: pricing

- name: Show which prices must come from the bundled file
  ansible.builtin.debug:
    msg: "{{ pricing.prices | selectattr('status', 'eq', 'unavailable') | map(attribute='reason') }}"
"""

RETURN = r"""
prices:
  description: One answer per entry of O(items), in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    item:
      description: The item, as given.
      type: str
      sample: ec2_instance_hour
    region:
      description: The region, as given.
      type: str
      sample: sa-east-1
    key:
      description: The variant, as given.
      type: str
      sample: t3.small
    status:
      description: C(ok) or C(unavailable).
      type: str
      sample: ok
    usd:
      description: The On-Demand price in USD per RV(prices[].unit).
      returned: when RV(prices[].status=ok)
      type: float
      sample: 0.0336
    unit:
      description: The unit the cost estimate uses for the item (C(hour), C(GB-month), C(GB), ...).
      type: str
      sample: hour
    api_unit:
      description: The unit as the Price List API states it.
      returned: when RV(prices[].status=ok)
      type: str
      sample: Hrs
    source:
      description: Where the price was read, with the offer version, publication date and SKU.
      returned: when RV(prices[].status=ok)
      type: str
      sample: AWS Price List API AmazonEC2, offer 20260910195514 published 2026-09-10T19:55:14Z, SKU CRAJUW7BTXFMT2UJ
    description:
      description: The price dimension's own description.
      returned: when RV(prices[].status=ok)
      type: str
      sample: $0.0104 per On Demand Linux t3.micro Instance Hour
    reason:
      description: Why no price is given, on one line.
      returned: when RV(prices[].status=unavailable)
      type: str
      sample: "GetProducts: AccessDeniedException (HTTP 400) User is not authorized"
"""

import json
import re
from typing import Any, NamedTuple

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError  # not a BotoCoreError
except ImportError:
    pass  # Reported by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

Result = dict[str, Any]
Client = Any  # a boto3 'pricing' client

PRICING_REGION = "us-east-1"  # the Price List Query API answers in us-east-1 (and ap-south-1)
MAX_PAGES = 10  # a well-filtered query has one or two products; more means the filters are wrong

# The unit the cost estimate (and roles/cost_estimate/files/prices.yml) uses for each item.
UNITS = {
    "ec2_instance_hour": "hour",
    "ebs_gp3_gb_month": "GB-month",
    "public_ipv4_hour": "hour",
    "rds_instance_hour": "hour",
    "rds_gp3_gb_month": "GB-month",
    "rds_backup_gb_month": "GB-month",
    "alb_hour": "hour",
    "alb_lcu_hour": "LCU-hour",
    "ssm_parameter_standard_month": "parameter-month",
    "kms_customer_key_month": "key-month",
    "kms_aws_managed_key_month": "key-month",
    "data_transfer_out_gb": "GB",
    "data_transfer_out_free": "GB-month",
    "rds_backup_free": "percent of provisioned storage",
}
NOT_IN_PRICE_LIST = {
    "ssm_parameter_standard_month": "standard parameters have no charge and no product",
    "kms_aws_managed_key_month": "AWS managed keys have no monthly charge and no product",
    "data_transfer_out_free": "a free allowance, not a price",
    "rds_backup_free": "a free allowance, not a price",
}
DEPLOYMENT = {"single": "Single-AZ", "multi": "Multi-AZ"}


class Query(NamedTuple):
    """One GetProducts question: the service, TERM_MATCH filters, and a usagetype check.

    usagetype values carry a region prefix that cannot be derived from the region code (none in
    us-east-1, SAE1- in sa-east-1, EU- in eu-west-1), so the suffix is checked here, not sent."""

    service: str
    filters: dict[str, str]
    usagetype_suffix: str | None = None
    first_paid_tier: bool = False  # tiered prices (data transfer): take the first tier above $0


# --- answers ---------------------------------------------------------------------------


def one_line(text: str, limit: int = 200) -> str:
    """Collapse an error message (possibly an HTML page) to one short line."""
    flat = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def answer(item: str, region: str, key: str, **fields: Any) -> Result:
    return {"item": item, "region": region, "key": key, "unit": UNITS.get(item, ""), **fields}


def unavailable(item: str, region: str, key: str, reason: str) -> Result:
    return answer(item, region, key, status="unavailable", reason=one_line(reason))


def error_reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.response.get("Error", {}).get("Message", "")
        return f"{error.operation_name}: {code} (HTTP {status}) {message}".rstrip()
    if isinstance(error, ResponseParserError):
        return "unreadable response: " + str(error).splitlines()[0]
    return f"{type(error).__name__}: {error}"


# --- items -> GetProducts filters ----------------------------------------------------------


def query_for(item: str, region: str, key: str) -> Query:
    """The GetProducts question for an item; ValueError when the API cannot price it."""
    if item in NOT_IN_PRICE_LIST:
        raise ValueError(f"not in the Price List API ({NOT_IN_PRICE_LIST[item]})")
    if item not in UNITS:
        raise ValueError(f"unknown item {item!r}")
    if region == "*":
        raise ValueError('the Price List API prices one region at a time; region "*" is for the bundled file')
    where = {"regionCode": region}
    if item == "ec2_instance_hour":
        linux = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "licenseModel": "No License required"}
        on_demand = {"capacitystatus": "Used", "marketoption": "OnDemand", "operation": "RunInstances"}
        return Query("AmazonEC2", {**where, "productFamily": "Compute Instance", "instanceType": key, **linux, **on_demand})
    if item == "ebs_gp3_gb_month":
        return Query("AmazonEC2", {**where, "productFamily": "Storage", "volumeApiName": "gp3"}, "EBS:VolumeUsage.gp3")
    if item == "public_ipv4_hour":
        return Query("AmazonVPC", where, "PublicIPv4:InUseAddress")
    if item == "rds_instance_hour":
        instance_class, _, deployment = key.partition("/")
        if deployment not in DEPLOYMENT:
            raise ValueError(f"key must be CLASS/single or CLASS/multi, not {key!r}")
        return Query(
            "AmazonRDS",
            {
                **where,
                "productFamily": "Database Instance",
                "instanceType": instance_class,
                "databaseEngine": "PostgreSQL",
                "deploymentOption": DEPLOYMENT[deployment],
            },
        )
    if item == "rds_gp3_gb_month":
        if key not in DEPLOYMENT:
            raise ValueError(f"key must be single or multi, not {key!r}")
        usage = "RDS:GP3-Storage" if key == "single" else "RDS:Multi-AZ-GP3-Storage"
        filters = {**where, "productFamily": "Database Storage", "databaseEngine": "PostgreSQL", "deploymentOption": DEPLOYMENT[key]}
        return Query("AmazonRDS", filters, usage)
    if item == "rds_backup_gb_month":
        return Query("AmazonRDS", {**where, "productFamily": "Storage Snapshot"}, "RDS:ChargedBackupUsage")
    if item in ("alb_hour", "alb_lcu_hour"):
        filters = {**where, "productFamily": "Load Balancer-Application", "locationType": "AWS Region"}
        return Query("AWSELB", filters, "LoadBalancerUsage" if item == "alb_hour" else "LCUUsage")
    if item == "kms_customer_key_month":
        return Query("awskms", where, "KMS-Keys")
    # data_transfer_out_gb
    filters = {"fromRegionCode": region, "toLocation": "External", "transferType": "AWS Outbound"}
    return Query("AWSDataTransfer", filters, "DataTransfer-Out-Bytes", first_paid_tier=True)


# --- reading GetProducts ---------------------------------------------------------------


def get_products(pricing: Client, query: Query) -> list[dict]:
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in query.filters.items()]
    params: dict[str, Any] = {"ServiceCode": query.service, "Filters": filters, "FormatVersion": "aws_v1"}
    products: list[dict] = []
    for _page in range(MAX_PAGES):
        page = pricing.get_products(**params)
        products += [json.loads(entry) for entry in page.get("PriceList", [])]
        if not page.get("NextToken"):
            break
        params["NextToken"] = page["NextToken"]
    return products


def usagetype_matches(product: dict, suffix: str | None) -> bool:
    if suffix is None:
        return True
    usagetype = product.get("product", {}).get("attributes", {}).get("usagetype", "")
    return usagetype == suffix or usagetype.endswith("-" + suffix)


def dimensions(product: dict) -> list[dict]:
    """The On-Demand price dimensions of a product, lowest range first."""
    found = [
        dimension
        for term in product.get("terms", {}).get("OnDemand", {}).values()
        for dimension in term.get("priceDimensions", {}).values()
        if "USD" in dimension.get("pricePerUnit", {})
    ]
    return sorted(found, key=lambda dimension: float(dimension.get("beginRange", "0") or 0))


def usd(dimension: dict) -> float:
    return float(dimension["pricePerUnit"]["USD"])


def priced_dimension(product: dict, first_paid_tier: bool) -> dict | None:
    """The dimension that is the product's price, or None when it has none or several."""
    found = dimensions(product)
    if first_paid_tier:
        found = [dimension for dimension in found if usd(dimension) > 0][:1]
    return found[0] if len({usd(dimension) for dimension in found}) == 1 else None


def describe(query: Query) -> str:
    filters = ", ".join(f"{field}={value}" for field, value in query.filters.items())
    suffix = f", usagetype *{query.usagetype_suffix}" if query.usagetype_suffix else ""
    return f"{query.service} ({filters}{suffix})"


def look_up(pricing: Client, item: str, region: str, key: str = "") -> Result:
    """The On-Demand price of one item in one region, or why there is none."""
    try:
        query = query_for(item, region, key)
    except ValueError as error:
        return unavailable(item, region, key, str(error))
    try:
        products = get_products(pricing, query)
    except (BotoCoreError, ClientError, ResponseParserError) as error:
        return unavailable(item, region, key, error_reason(error))
    products = [product for product in products if usagetype_matches(product, query.usagetype_suffix)]
    if not products:
        return unavailable(item, region, key, f"no product matches {describe(query)}")
    priced = [(product, priced_dimension(product, query.first_paid_tier)) for product in products]
    unpriced = [product["product"].get("sku", "?") for product, dimension in priced if dimension is None]
    if unpriced:
        return unavailable(item, region, key, f"no single On-Demand USD price for SKU {', '.join(unpriced)}")
    prices = sorted({usd(dimension) for _product, dimension in priced})
    if len(prices) > 1:
        listed = ", ".join(f"{price:g}" for price in prices)
        return unavailable(
            item, region, key, f"{len(products)} products match with {len(prices)} different prices ({listed}): {describe(query)}"
        )
    product, dimension = priced[0]
    source = (
        f"AWS Price List API {query.service}, offer {product.get('version', '?')}"
        f" published {product.get('publicationDate', '?')}, SKU {product['product'].get('sku', '?')}"
    )
    return answer(
        item,
        region,
        key,
        status="ok",
        usd=prices[0],
        api_unit=dimension.get("unit", ""),
        source=source,
        description=dimension.get("description", ""),
    )


# --- module ----------------------------------------------------------------------------


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            items=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    item=dict(type="str", required=True),
                    region=dict(type="str", required=True),
                    key=dict(type="str", default="", no_log=False),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    # The endpoint stays the user's endpoint_url when given; the region is always the pricing one.
    pricing = module.client("pricing", region=PRICING_REGION)
    prices = [look_up(pricing, entry["item"], entry["region"], entry["key"] or "") for entry in module.params["items"]]
    module.exit_json(changed=False, prices=prices)


if __name__ == "__main__":
    main()
