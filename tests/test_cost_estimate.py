"""The cost estimate's arithmetic (roles/cost_estimate/filter_plugins/cost.py) against a small fixed price file, each
line and the total; then the seeds' configuration priced from the bundled file; then the playbook
(make cost) on the local inventory, which cannot reach the Price List API."""

from __future__ import annotations

import math
import re
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, ansible_env, load_source
from test_cost_prices import KNOWN_MISSING

cost = load_source("roles/cost_estimate/filter_plugins/cost.py")

PRICE_FILE = ROOT / "roles" / "cost_estimate" / "files" / "prices.yml"
SEEN = {"unit": "x", "source": "https://example.test/prices", "seen": "2026-01-02"}
# Round numbers, so each line's expected figure is plain arithmetic.
PRICES = {
    "file_date": "2026-01-02",
    "prices": [
        {"item": "ec2_instance_hour", "region": "r-1", "key": "t3.micro", "usd": 0.01, **SEEN},
        {"item": "ebs_gp3_gb_month", "region": "r-1", "key": "", "usd": 0.1, **SEEN},
        {"item": "public_ipv4_hour", "region": "*", "key": "", "usd": 0.005, **SEEN},
        {"item": "rds_instance_hour", "region": "r-1", "key": "db.t4g.micro/single", "usd": 0.02, **SEEN},
        {"item": "rds_instance_hour", "region": "r-1", "key": "db.t4g.micro/multi", "usd": 0.04, **SEEN},
        {"item": "rds_gp3_gb_month", "region": "r-1", "key": "single", "usd": 0.2, **SEEN},
        {"item": "rds_gp3_gb_month", "region": "r-1", "key": "multi", "usd": 0.4, **SEEN},
        {"item": "rds_backup_gb_month", "region": "r-1", "key": "", "usd": 0.1, **SEEN},
        {"item": "alb_hour", "region": "r-1", "key": "", "usd": 0.03, **SEEN},
        {"item": "alb_lcu_hour", "region": "r-1", "key": "", "usd": 0.01, **SEEN},
        {"item": "ssm_parameter_standard_month", "region": "*", "key": "", "usd": 0.0, **SEEN},
        {"item": "kms_customer_key_month", "region": "*", "key": "", "usd": 1.0, **SEEN},
        {"item": "kms_aws_managed_key_month", "region": "*", "key": "", "usd": 0.0, **SEEN},
        {"item": "data_transfer_out_gb", "region": "r-1", "key": "", "usd": 0.1, **SEEN},
    ],
    "allowances": [
        {"item": "data_transfer_out_free", "region": "*", "key": "", "amount": 100, **SEEN},
    ],
}
CONFIG = {
    "region": "r-1", "topology": "single", "web_instance_type": "t3.micro", "web_instance_count": 1,
    "web_root_volume_gb": 10, "db_instance_class": "db.t4g.micro", "db_multi_az": False,
    "db_storage_gb": 20, "db_backup_gb": 30, "lb_lcu": 2, "lb_zones": 2, "ssm_parameters": 6,
    "kms_customer_keys": 0, "transfer_gb": 150,
}


def by_label(estimate: dict) -> dict[str, float]:
    return {line["label"]: line["usd_month"] for line in estimate["lines"]}


def test_single_topology_prices_each_line_and_the_total():
    estimate = cost.cost_estimate(CONFIG, PRICES)
    assert by_label(estimate) == {
        "EC2 t3.micro web instances × 1": 7.30,                          # 730 h × 0.01
        "EBS gp3 root volumes, 1 × 10 GB": 1.00,                         # 10 GB × 0.1
        "Public IPv4 addresses of the web instances × 1": 3.65,          # 730 h × 0.005
        "RDS PostgreSQL db.t4g.micro, Single-AZ": 14.60,                 # 730 h × 0.02
        "RDS gp3 storage, 20 GB, Single-AZ": 4.00,                       # 20 GB × 0.2
        "RDS backup storage beyond the free allowance": 1.00,            # (30 − 20) GB × 0.1
        "SSM Parameter Store standard parameters × 6": 0.00,
        "KMS: the AWS managed key alias/aws/ssm": 0.00,
        "Data transfer out to the internet beyond the free allowance": 5.00,  # (150 − 100) GB × 0.1
    }
    assert estimate["total_usd"] == 36.55
    assert estimate["complete"] is True
    assert {line["basis"] for line in estimate["lines"]} == {"price file"}


def test_ha_topology_adds_the_load_balancer_and_scales_the_web_lines():
    config = {**CONFIG, "topology": "ha", "web_instance_count": 3, "db_multi_az": True, "kms_customer_keys": 1}
    estimate = cost.cost_estimate(config, PRICES)
    lines = by_label(estimate)
    assert lines["EC2 t3.micro web instances × 3"] == 21.90
    assert lines["EBS gp3 root volumes, 3 × 10 GB"] == 3.00
    assert lines["Public IPv4 addresses of the web instances × 3"] == 10.95
    assert lines["RDS PostgreSQL db.t4g.micro, Multi-AZ"] == 29.20
    assert lines["RDS gp3 storage, 20 GB, Multi-AZ"] == 8.00
    assert lines["Application Load Balancer hours"] == 21.90                   # 730 h × 0.03
    assert lines["Load balancer capacity units (LCU)"] == 14.60                # 2 LCU × 730 h × 0.01
    assert lines["Public IPv4 addresses of the load balancer × 2 zones"] == 7.30
    assert lines["KMS customer managed keys × 1"] == 1.00
    assert estimate["total_usd"] == round(sum(lines.values()), 2) == 123.85


def test_a_price_list_answer_beats_the_file_and_a_missing_price_is_said():
    looked_up = [
        {"item": "ec2_instance_hour", "region": "r-1", "key": "t3.micro", "status": "ok", "usd": 0.02,
         "source": "AWS Price List API, SKU ABC"},
        {"item": "rds_instance_hour", "region": "r-1", "key": "db.t4g.micro/single", "status": "unavailable",
         "reason": "HTTP 500"},
    ]
    prices = {**PRICES, "prices": [p for p in PRICES["prices"] if p["item"] != "alb_hour"]}
    estimate = cost.cost_estimate({**CONFIG, "topology": "ha"}, prices, looked_up)
    lines = {line["item"] + line["key"]: line for line in estimate["lines"]}
    assert lines["ec2_instance_hourt3.micro"]["usd_month"] == 14.60
    assert lines["ec2_instance_hourt3.micro"]["basis"] == "Price List API"
    assert lines["rds_instance_hourdb.t4g.micro/single"]["basis"] == "price file"
    assert lines["alb_hour"]["usd_month"] is None
    assert estimate["complete"] is False
    table = cost.cost_table(estimate)
    assert "no price" in table and "incomplete" in table
    assert "AWS Price List API, SKU ABC" in table and "https://example.test/prices (seen 2026-01-02)" in table


def test_the_items_asked_of_the_price_list_match_the_lines():
    items = cost.cost_items({**CONFIG, "topology": "ha"})
    assert {"item": "alb_lcu_hour", "region": "r-1", "key": ""} in items
    assert {"item": "rds_instance_hour", "region": "r-1", "key": "db.t4g.micro/single"} in items
    assert len(items) == len({(i["item"], i["key"]) for i in items}), "an item is asked for twice"


def test_the_comparison_puts_the_gap_on_the_lines_both_tables_price():
    estimate = cost.cost_estimate(CONFIG, PRICES)
    text = cost.cost_comparison(estimate, {
        "name": "the seeds", "usd_month": 30.0, "items": ["ec2_instance_hour", "rds_instance_hour"],
        "notes": {"public_ipv4_hour": "billed since 2024"},
    })
    # Items both price: 7.30 + 14.60 = 21.90; 30.00 − 21.90 = 8.10 more in theirs.
    assert "the toolkit says $21.90, the seeds' table $30.00: $8.10 more in theirs" in text
    assert "| Public IPv4 addresses of the web instances × 1 | $3.65 | no | billed since 2024 |" in text
    assert "no price for" not in text and "| **toolkit total** | **$" in text and "incomplete" not in text


def test_the_comparison_says_when_a_line_both_tables_have_is_unpriced():
    prices = {**PRICES, "prices": [p for p in PRICES["prices"] if p["item"] != "rds_instance_hour"]}
    estimate = cost.cost_estimate(CONFIG, prices)
    text = cost.cost_comparison(estimate, {"name": "the seeds", "usd_month": 30.0,
                                           "items": ["ec2_instance_hour", "rds_instance_hour"]})
    # Only the EC2 line is priced on both sides now: 30.00 − 7.30 = 22.70, which holds the RDS hours.
    assert "the toolkit says $7.30, the seeds' table $30.00: $22.70 more in theirs" in text
    assert "The toolkit has no price for RDS PostgreSQL db.t4g.micro, Single-AZ, so that gap includes its cost." in text
    assert "(incomplete: a line has no price)" in text.split("**toolkit total**")[1].split("\n")[0]


def load_bundled() -> dict:
    return yaml.safe_load(PRICE_FILE.read_text())


@pytest.fixture(scope="module")
def seeds() -> dict:
    mapping = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "cost.yml").read_text())
    return mapping["cost_estimate_reference"]


def test_the_seeds_configuration_is_priced_from_the_bundled_file(seeds):
    bundled = load_bundled()
    estimate = cost.cost_estimate(seeds["config"], bundled)
    lines = {line["item"]: line for line in estimate["lines"]}
    # Every line is priced from the file, except those the file has no cited price for.
    unpriced = {(line["item"], "sa-east-1", line["key"]) for line in estimate["lines"] if line["usd_month"] is None}
    assert unpriced == KNOWN_MISSING & {
        (line["item"], "sa-east-1", line["key"]) for line in estimate["lines"] if line["quantity"] > 0}
    assert estimate["complete"] is (not unpriced)
    assert {line["basis"] for line in estimate["lines"]} <= {"price file", "no price", "nothing billed"}
    file_price = {(p["item"], p["key"]): p["usd"] for p in bundled["prices"] if p["region"] in ("sa-east-1", "*")}
    for item, key, quantity in [("ec2_instance_hour", "t3.micro", 730), ("rds_instance_hour", "db.t4g.micro/single", 730),
                                ("rds_gp3_gb_month", "single", 20), ("ebs_gp3_gb_month", "", 8), ("public_ipv4_hour", "", 730)]:
        if (item, key) in file_price:
            assert lines[item]["usd_month"] == round(quantity * file_price[(item, key)], 2), item
    assert lines["data_transfer_out_gb"]["usd_month"] == 0.0, "1 GB is within the free allowance"
    assert lines["rds_backup_gb_month"]["usd_month"] == 0.0, "the backups fit in the free allowance"
    assert 0 < estimate["total_usd"] < seeds["usd_month"]


RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")


def test_make_cost_on_the_local_inventory_writes_both_topologies(tmp_path):
    """The playbook with the Price List off (the local inventory has no AWS endpoint running here)."""
    report = tmp_path / "cost.md"
    cmd = [str(BIN / "ansible-playbook"), "-i", "inventories/local", "playbooks/cost.yml",
           "-e", "cost_estimate_price_list=false", "-e", f"state_dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    text = report.read_text()
    assert "## Topology single (this environment)" in text and "## Topology ha\n" in text
    assert "Application Load Balancer hours" in text.split("## Topology ha")[1]
    assert "$70.74" in text
    again = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
    assert [m.groups() for m in RECAP.finditer(again.stdout)] == [("0", "0")]
    # The README shows the demo's table as make cost writes it.
    single = text.split("## Topology single (this environment)\n\n")[1].split("\n## Topology ha")[0].strip()
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- cost: begin (make cost ENV=local, topology single) -->\n")[1].split("\n<!-- cost: end -->")[0]
    assert shown == single, "README's cost table drifted from make cost ENV=local: paste .state/local/cost.md's"


@pytest.mark.parametrize("region", ["us-east-1", "sa-east-1"])
def test_the_budget_limit_defaults_to_the_estimate_with_headroom(region):
    """budget_limit_usd (playbooks/group_vars/all/budget.yml) as provision.yml computes it. The
    playbook sits in playbooks/ for a moment, where the shared group_vars apply."""
    playbook = ROOT / "playbooks" / f".test-budget-limit-{region}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The budget's default limit",
        "hosts": "control",
        "gather_facts": False,
        "roles": [{"role": "cost_estimate", "vars": {"cost_estimate_report_file": "", "cost_estimate_reference": {},
                                                     "cost_estimate_price_list": False}}],
        "tasks": [{"name": "Limit is shown", "ansible.builtin.debug": {"msg": "limit={{ budget_limit_usd }} "
                                                                         "total={{ cost_estimate_estimates[topology] }}"}}],
    }]))
    cmd = [str(BIN / "ansible-playbook"), "-i", "inventories/local", str(playbook), "-e", f"aws_region={region}"]
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True)
    finally:
        playbook.unlink()
    assert out.returncode == 0, out.stdout[-3000:]
    shown = re.search(r"limit=(.*?) total=(\{.*\})", out.stdout)
    estimate = yaml.safe_load(shown.group(2))
    if estimate["complete"]:
        assert shown.group(1) == str(math.ceil(estimate["total_usd"] * 1.25))
    else:
        assert shown.group(1).startswith("none: the cost estimate lacks a price, set budget_limit_usd")
    assert estimate["complete"] is (region == "us-east-1"), "the bundled file prices every line in us-east-1 only"
