"""The aws_pricing_info module: its look-ups against stubbed Price List answers, then the module
through `ansible` against the moto emulator, which has no Price List API."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.stub import ANY, Stubber

from conftest import BIN, FAKE_KEYS, HTML_500, ROOT, load_source, module_env



pricing_info = load_source("plugins/modules/aws_pricing_info.py")

# One product as GetProducts returns it (a JSON string per product). SKU, rate code, offer version
# and price are those of the us-east-1 t3.micro Linux On-Demand product in the AmazonEC2 offer
# version 20260910195514; the attributes are trimmed to the ones the look-up filters on.
T3_MICRO = {
    "product": {
        "productFamily": "Compute Instance",
        "attributes": {
            "regionCode": "us-east-1",
            "location": "US East (N. Virginia)",
            "instanceType": "t3.micro",
            "usagetype": "BoxUsage:t3.micro",
            "operation": "RunInstances",
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
            "marketoption": "OnDemand",
            "licenseModel": "No License required",
            "servicecode": "AmazonEC2",
        },
        "sku": "CRAJUW7BTXFMT2UJ",
    },
    "serviceCode": "AmazonEC2",
    "terms": {
        "OnDemand": {
            "CRAJUW7BTXFMT2UJ.JRTCKXETXF": {
                "priceDimensions": {
                    "CRAJUW7BTXFMT2UJ.JRTCKXETXF.6YS6EN2CT7": {
                        "unit": "Hrs",
                        "endRange": "Inf",
                        "description": "$0.0104 per On Demand Linux t3.micro Instance Hour",
                        "appliesTo": [],
                        "rateCode": "CRAJUW7BTXFMT2UJ.JRTCKXETXF.6YS6EN2CT7",
                        "beginRange": "0",
                        "pricePerUnit": {"USD": "0.0104000000"},
                    }
                },
                "sku": "CRAJUW7BTXFMT2UJ",
                "effectiveDate": "2026-09-01T00:00:00Z",
                "offerTermCode": "JRTCKXETXF",
                "termAttributes": {},
            }
        }
    },
    "version": "20260910195514",
    "publicationDate": "2026-09-10T19:55:14Z",
}


def product(base: dict, sku: str, usd: str, **attributes: str) -> dict:
    """A copy of a product with another SKU, price and attributes."""
    made = copy.deepcopy(base)
    made["product"]["sku"] = sku
    made["product"]["attributes"].update(attributes)
    (term,) = made["terms"]["OnDemand"].values()
    (dimension,) = term["priceDimensions"].values()
    dimension["pricePerUnit"]["USD"] = usd
    return made


def page(*products: dict) -> dict:
    return {"FormatVersion": "aws_v1", "PriceList": [json.dumps(made) for made in products]}


def client():
    # No botocore retries: an HTTP 500 must be answered once, not retried with sleeps.
    return boto3.client("pricing", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}), **FAKE_KEYS)


@pytest.fixture
def stubbed():
    """A pricing client whose calls are answered by a Stubber; every stub must be used."""
    made = client()
    stubber = Stubber(made)
    stubber.activate()
    yield made, stubber
    stubber.assert_no_pending_responses()
    stubber.deactivate()


def term(field: str, value: str) -> dict:
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


# --- answers ------------------------------------------------------------------------------------


def test_one_matching_product_gives_its_price_and_where_it_was_read(stubbed):
    pricing, stub = stubbed
    expected = {"ServiceCode": "AmazonEC2", "Filters": ANY, "FormatVersion": "aws_v1"}
    stub.add_response("get_products", page(T3_MICRO), expected)

    result = pricing_info.look_up(pricing, "ec2_instance_hour", "us-east-1", "t3.micro")

    assert result == {
        "item": "ec2_instance_hour",
        "region": "us-east-1",
        "key": "t3.micro",
        "status": "ok",
        "usd": 0.0104,
        "unit": "hour",
        "api_unit": "Hrs",
        "source": "AWS Price List API AmazonEC2, offer 20260910195514 published 2026-09-10T19:55:14Z, SKU CRAJUW7BTXFMT2UJ",
        "description": "$0.0104 per On Demand Linux t3.micro Instance Hour",
    }


def test_ec2_instance_is_asked_for_linux_shared_on_demand_in_its_region(stubbed):
    pricing, stub = stubbed
    filters = [
        term("regionCode", "sa-east-1"),
        term("productFamily", "Compute Instance"),
        term("instanceType", "t3.small"),
        term("operatingSystem", "Linux"),
        term("tenancy", "Shared"),
        term("preInstalledSw", "NA"),
        term("licenseModel", "No License required"),
        term("capacitystatus", "Used"),
        term("marketoption", "OnDemand"),
        term("operation", "RunInstances"),
    ]
    stub.add_response(
        "get_products", page(), {"ServiceCode": "AmazonEC2", "Filters": filters, "FormatVersion": "aws_v1"}
    )

    pricing_info.look_up(pricing, "ec2_instance_hour", "sa-east-1", "t3.small")


def test_two_different_prices_are_unavailable_not_a_guess(stubbed):
    # e.g. two SKUs that differ only in an attribute the filters do not name
    pricing, stub = stubbed
    other = product(T3_MICRO, "ZZZZZZZZZZZZZZZZ", "0.0200000000", licenseModel="Bring your own license")
    stub.add_response("get_products", page(T3_MICRO, other))

    result = pricing_info.look_up(pricing, "ec2_instance_hour", "us-east-1", "t3.micro")

    assert result["status"] == "unavailable" and "usd" not in result
    assert result["reason"].startswith("2 products match with 2 different prices (0.0104, 0.02)")


def test_several_products_at_one_price_give_that_price(stubbed):
    pricing, stub = stubbed
    stub.add_response("get_products", page(T3_MICRO, product(T3_MICRO, "YYYYYYYYYYYYYYYY", "0.0104000000")))

    result = pricing_info.look_up(pricing, "ec2_instance_hour", "us-east-1", "t3.micro")

    assert (result["status"], result["usd"]) == ("ok", 0.0104)


def test_no_matching_product_is_unavailable(stubbed):
    pricing, stub = stubbed
    stub.add_response("get_products", page())

    result = pricing_info.look_up(pricing, "rds_instance_hour", "sa-east-1", "db.t4g.micro/multi")

    assert result["status"] == "unavailable"
    assert result["reason"].startswith("no product matches AmazonRDS (regionCode=sa-east-1")
    assert "deploymentOption=Multi-AZ" in result["reason"] and "databaseEngine=PostgreSQL" in result["reason"]


def test_access_denied_is_unavailable(stubbed):
    pricing, stub = stubbed
    stub.add_client_error(
        "get_products", "AccessDeniedException", "User is not authorized to perform: pricing:GetProducts"
    )

    result = pricing_info.look_up(pricing, "alb_hour", "sa-east-1")

    assert result["status"] == "unavailable"
    assert result["reason"].startswith("GetProducts: AccessDeniedException (HTTP 400) User is not authorized")


def test_an_endpoint_answering_http_500_is_unavailable():
    # moto's answer: the pricing service is not implemented.
    pricing = client()

    class Raw:
        def stream(self, **_kwargs):
            yield HTML_500

    def send(request, **_kwargs):
        return AWSResponse(request.url, 500, {"Content-Type": "text/html"}, Raw())

    pricing.meta.events.register("before-send", send)

    result = pricing_info.look_up(pricing, "ebs_gp3_gb_month", "sa-east-1")

    assert result["status"] == "unavailable"
    assert "HTTP 500" in result["reason"] and "<" not in result["reason"] and "\n" not in result["reason"]


@pytest.mark.parametrize(
    "item", ["ssm_parameter_standard_month", "kms_aws_managed_key_month", "data_transfer_out_free", "rds_backup_free"]
)
def test_items_the_price_list_does_not_price_are_unavailable_without_asking(stubbed, item):
    pricing, _stub = stubbed  # no response stubbed: any call would fail the test

    result = pricing_info.look_up(pricing, item, "sa-east-1")

    assert result["status"] == "unavailable"
    assert result["reason"].startswith("not in the Price List API")


def test_region_star_is_for_the_file_not_the_api(stubbed):
    pricing, _stub = stubbed

    result = pricing_info.look_up(pricing, "public_ipv4_hour", "*")

    assert result["status"] == "unavailable" and "one region at a time" in result["reason"]


def test_usagetype_suffix_keeps_the_region_product_and_drops_look_alikes(stubbed):
    pricing, stub = stubbed
    lcu = product(T3_MICRO, "LCU0000000000001", "0.0110000000", usagetype="SAE1-LCUUsage")
    reserved = product(T3_MICRO, "LCU0000000000002", "0.0050000000", usagetype="SAE1-ReservedLCUUsage")
    stub.add_response("get_products", page(reserved, lcu))

    result = pricing_info.look_up(pricing, "alb_lcu_hour", "sa-east-1")

    assert (result["status"], result["usd"], result["unit"]) == ("ok", 0.011, "LCU-hour")
    assert result["source"].endswith("SKU LCU0000000000001")


def test_data_transfer_out_is_the_first_paid_tier(stubbed):
    pricing, stub = stubbed
    transfer = product(T3_MICRO, "DTO0000000000001", "0.0000000000", usagetype="SAE1-DataTransfer-Out-Bytes")
    (term_,) = transfer["terms"]["OnDemand"].values()
    first = next(iter(term_["priceDimensions"].values()))
    first.update(beginRange="0", endRange="1", unit="GB")
    tiers = {"DTO.1": first}
    for name, begin, end, usd in (("DTO.3", "10240", "51200", "0.138"), ("DTO.2", "1", "10240", "0.15")):
        tiers[name] = {**first, "beginRange": begin, "endRange": end, "pricePerUnit": {"USD": usd}}
    term_["priceDimensions"] = tiers
    stub.add_response(
        "get_products",
        page(transfer),
        {
            "ServiceCode": "AWSDataTransfer",
            "Filters": [
                term("fromRegionCode", "sa-east-1"),
                term("toLocation", "External"),
                term("transferType", "AWS Outbound"),
            ],
            "FormatVersion": "aws_v1",
        },
    )

    result = pricing_info.look_up(pricing, "data_transfer_out_gb", "sa-east-1")

    assert (result["status"], result["usd"], result["unit"]) == ("ok", 0.15, "GB")


def test_rds_instance_key_must_name_the_deployment(stubbed):
    pricing, _stub = stubbed

    result = pricing_info.look_up(pricing, "rds_instance_hour", "sa-east-1", "db.t4g.micro")

    assert result["status"] == "unavailable" and "CLASS/single or CLASS/multi" in result["reason"]


def test_later_pages_are_read(stubbed):
    pricing, stub = stubbed
    other = product(T3_MICRO, "ZZZZZZZZZZZZZZZZ", "0.0200000000")
    stub.add_response("get_products", {**page(T3_MICRO), "NextToken": "t1"})
    stub.add_response(
        "get_products", page(other), {"ServiceCode": "AmazonEC2", "Filters": ANY, "FormatVersion": "aws_v1", "NextToken": "t1"}
    )

    result = pricing_info.look_up(pricing, "ec2_instance_hour", "us-east-1", "t3.micro")

    assert result["status"] == "unavailable" and "2 different prices" in result["reason"]


# --- the module through ansible, against moto ---------------------------------------------------------


def test_module_answers_every_item_unavailable_against_an_emulator_without_pricing(moto_endpoint, tmp_path):
    env = {**module_env(tmp_path), "AWS_MAX_ATTEMPTS": "1"}
    args = {
        "endpoint_url": moto_endpoint,
        "region": "sa-east-1",
        "access_key": "testing",
        "secret_key": "testing",
        "items": [
            {"item": "ec2_instance_hour", "region": "sa-east-1", "key": "t3.micro"},
            {"item": "ssm_parameter_standard_month", "region": "sa-east-1"},
        ],
    }
    command = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "--check"]
    command += ["-e", f"ansible_python_interpreter={BIN / 'python'}", "-m", "aws_pricing_info", "-a", json.dumps(args)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if "{\n" not in out.stdout:
        pytest.fail(f"ansible printed no result (rc {out.returncode}):\n{out.stdout}\n{out.stderr}")
    document = out.stdout[out.stdout.index("{\n") : out.stdout.rindex("\n}") + 2]
    result = json.loads(document)["plays"][0]["tasks"][0]["hosts"]["localhost"]

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    first, second = result["prices"]
    assert (first["item"], first["key"], first["status"], first["unit"]) == ("ec2_instance_hour", "t3.micro", "unavailable", "hour")
    assert "HTTP 500" in first["reason"]
    assert second["status"] == "unavailable" and second["reason"].startswith("not in the Price List API")
