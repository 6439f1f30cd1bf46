"""The monthly cost estimate's arithmetic (role cost_estimate): which billable items an
environment's variables declare, their quantities, and their price from the AWS Price List API or
the bundled price file.

The role's own filters, tested through these functions in tests/test_cost_estimate.py:

- cost_items(config): the priced items the configuration needs, as {item, region, key}, which
  the role asks the Price List API for (module aws_pricing_info);
- cost_estimate(config, price_file, looked_up): the lines, each with its quantity, unit price,
  monthly cost and the source of its price, and the total;
- cost_table(estimate): the estimate as a Markdown table;
- cost_comparison(estimate, reference): the estimate beside a hand-made total, line by line.

A month is 730 hours, the figure AWS's pricing pages and calculator use.
"""

from __future__ import annotations

from typing import Any

HOURS_PER_MONTH = 730


def _line(item: str, key: str, label: str, quantity: float, unit: str, assumption: str = "") -> dict[str, Any]:
    return {"item": item, "key": key, "label": label, "quantity": quantity, "unit": unit, "assumption": assumption}


def _planned_lines(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The billable items the configuration declares, with their monthly quantities (no prices)."""
    hours = HOURS_PER_MONTH
    web = int(config["web_instance_count"])
    deployment = "multi" if bool(config["db_multi_az"]) else "single"
    deployment_name = "Multi-AZ" if deployment == "multi" else "Single-AZ"
    storage = float(config["db_storage_gb"])
    lines = [
        _line("ec2_instance_hour", config["web_instance_type"],
              f"EC2 {config['web_instance_type']} web instances × {web}", web * hours, "hour"),
        _line("ebs_gp3_gb_month", "", f"EBS gp3 root volumes, {web} × {config['web_root_volume_gb']} GB",
              web * float(config["web_root_volume_gb"]), "GB-month"),
        _line("public_ipv4_hour", "", f"Public IPv4 addresses of the web instances × {web}", web * hours, "hour"),
        _line("rds_instance_hour", f"{config['db_instance_class']}/{deployment}",
              f"RDS PostgreSQL {config['db_instance_class']}, {deployment_name}", hours, "hour"),
        _line("rds_gp3_gb_month", deployment, f"RDS gp3 storage, {storage:g} GB, {deployment_name}", storage,
              "GB-month"),
    ]
    backup = float(config["db_backup_gb"])
    lines.append(_line("rds_backup_gb_month", "", "RDS backup storage beyond the free allowance",
                       max(0.0, backup - storage), "GB-month",
                       f"{backup:g} GB of backups, free up to the provisioned {storage:g} GB"))
    if config["topology"] == "ha":
        zones = int(config["lb_zones"])
        lcu = float(config["lb_lcu"])
        lines += [
            _line("alb_hour", "", "Application Load Balancer hours", hours, "hour"),
            _line("alb_lcu_hour", "", "Load balancer capacity units (LCU)", lcu * hours, "LCU-hour",
                  f"{lcu:g} load balancer capacity units on average (cost_lb_lcu)"),
            _line("public_ipv4_hour", "", f"Public IPv4 addresses of the load balancer × {zones} zones",
                  zones * hours, "hour", "one load balancer address per zone"),
        ]
    keys = int(config["kms_customer_keys"])
    lines += [
        _line("ssm_parameter_standard_month", "", f"SSM Parameter Store standard parameters × {config['ssm_parameters']}",
              float(config["ssm_parameters"]), "parameter-month"),
        _line("kms_customer_key_month", "", f"KMS customer managed keys × {keys}", float(keys), "key-month")
        if keys else
        _line("kms_aws_managed_key_month", "", "KMS: the AWS managed key alias/aws/ssm", 1.0, "key-month"),
    ]
    transfer = float(config["transfer_gb"])
    lines.append(_line("data_transfer_out_gb", "", "Data transfer out to the internet beyond the free allowance",
                       transfer, "GB", f"{transfer:g} GB a month out to the internet (cost_transfer_gb_month)"))
    return lines


def cost_items(config: dict[str, Any]) -> list[dict[str, str]]:
    """The distinct {item, region, key} the configuration needs a price for."""
    seen: list[dict[str, str]] = []
    for line in _planned_lines(config):
        wanted = {"item": line["item"], "region": config["region"], "key": line["key"]}
        if wanted not in seen:
            seen.append(wanted)
    return seen


def _from_file(entries: list[dict[str, Any]], item: str, region: str, key: str) -> dict[str, Any] | None:
    """The file's entry for the item in the region, else its every-region ("*") entry."""
    for wanted_region in (region, "*"):
        for entry in entries:
            if (entry["item"], entry["region"], entry.get("key", "")) == (item, wanted_region, key):
                return entry
    return None


def _price(price_file: dict[str, Any], looked_up: list[dict[str, Any]], item: str, region: str, key: str) -> dict[str, Any]:
    for answer in looked_up:
        if (answer["item"], answer["region"], answer.get("key", "")) == (item, region, key) and answer["status"] == "ok":
            return {"usd": float(answer["usd"]), "basis": "Price List API", "source": answer["source"], "seen": ""}
    entry = _from_file(price_file["prices"], item, region, key)
    if entry is None:
        return {"usd": None, "basis": "no price", "source": f"no price for {' '.join(filter(None, (item, key)))} in {region}", "seen": ""}
    return {"usd": float(entry["usd"]), "basis": "price file", "source": entry["source"], "seen": str(entry["seen"])}


def cost_estimate(config: dict[str, Any], price_file: dict[str, Any], looked_up: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Price each line: the Price List API's answer when it gave one, else the bundled file."""
    region = config["region"]
    looked_up = looked_up or []
    lines = []
    for line in _planned_lines(config):
        quantity = line["quantity"]
        if line["item"] == "data_transfer_out_gb":
            free = _from_file(price_file.get("allowances", []), "data_transfer_out_free", region, "")
            if free is not None:
                quantity = max(0.0, quantity - float(free["amount"]))
                line["assumption"] += f", the first {float(free['amount']):g} GB free, account-wide"
        price = _price(price_file, looked_up, line["item"], region, line["key"])
        if price["usd"] is None and quantity == 0:
            # Nothing is billed, whatever the price.
            price = {**price, "usd": 0.0, "basis": "nothing billed"}
        usd_month = None if price["usd"] is None else round(quantity * price["usd"], 2)
        lines.append({**line, "quantity": quantity, "usd_unit": price["usd"], "usd_month": usd_month,
                      "basis": price["basis"], "source": price["source"], "seen": price["seen"]})
    priced = [line["usd_month"] for line in lines if line["usd_month"] is not None]
    return {
        "region": region,
        "topology": config["topology"],
        "hours_per_month": HOURS_PER_MONTH,
        "file_date": str(price_file.get("file_date", "")),
        "lines": lines,
        "total_usd": round(sum(priced), 2),
        "complete": len(priced) == len(lines),
    }


def _usd(value: float | None, digits: int = 2) -> str:
    return "no price" if value is None else f"${value:,.{digits}f}"


def _total(estimate: dict[str, Any]) -> str:
    return _usd(estimate["total_usd"]) + ("" if estimate["complete"] else " (incomplete: a line has no price)")


def cost_table(estimate: dict[str, Any]) -> str:
    """The estimate as a Markdown table, the sources after it."""
    rows = [
        "| item | quantity | unit price | per month | price from |",
        "|---|---:|---:|---:|---|",
    ]
    sources: list[str] = []
    for line in estimate["lines"]:
        if line["basis"] == "price file":
            source = f"{line['source']} (seen {line['seen']})"
        else:
            source = line["source"]
        if source not in sources:
            sources.append(source)
        rows.append(f"| {line['label']} | {line['quantity']:,g} {line['unit']} | {_usd(line['usd_unit'], 4)} "
                    f"| {_usd(line['usd_month'])} | {line['basis']} [{sources.index(source) + 1}] |")
    total = _total(estimate)
    rows.append(f"| **total, {estimate['region']}, topology {estimate['topology']}** | | | **{total}** | |")
    rows.append("")
    assumed = [line["assumption"] for line in estimate["lines"] if line["assumption"]]
    if assumed:
        rows += ["Assumed: " + "; ".join(assumed) + ".", ""]
    rows += [f"[{number}] {source}" for number, source in enumerate(sources, start=1)]
    return "\n".join(rows)


def cost_comparison(estimate: dict[str, Any], reference: dict[str, Any]) -> str:
    """The estimate beside a hand-made total: which lines the hand-made table priced, and the gap.

    reference: {name, usd_month, items: [the items its table priced], notes: {item: why}}.
    """
    included = set(reference["items"])
    notes = reference.get("notes", {})
    theirs = reference["name"] + ("'" if reference["name"].endswith("s") else "'s")
    rows = [
        f"| item | toolkit | in {theirs} table | why it differs |",
        "|---|---:|---|---|",
    ]
    inside = 0.0
    unpriced = []
    for line in estimate["lines"]:
        priced_there = line["item"] in included
        if priced_there and line["usd_month"] is None:
            unpriced.append(line["label"])
        inside += line["usd_month"] if priced_there and line["usd_month"] is not None else 0.0
        why = notes.get(line["item"], "" if priced_there else "not in their table")
        rows.append(f"| {line['label']} | {_usd(line['usd_month'])} | {'yes' if priced_there else 'no'} | {why} |")
    gap = round(float(reference["usd_month"]) - inside, 2)
    rows += [
        f"| **toolkit total** | **{_total(estimate)}** | | |",
        f"| **{theirs} total** | **{_usd(float(reference['usd_month']))}** | | |",
        "",
        f"On the items both tables price, the toolkit says {_usd(inside)}, {theirs} table "
        f"{_usd(float(reference['usd_month']))}: {_usd(abs(gap))} {'more' if gap >= 0 else 'less'} in theirs. "
        + (f"The toolkit has no price for {', '.join(unpriced)}, so that gap includes its cost. " if unpriced else "")
        + "Their table gives a total only, so that part of the difference cannot be put on one line.",
    ]
    return "\n".join(rows)


class FilterModule:
    """The cost estimate's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "cost_items": cost_items,
            "cost_estimate": cost_estimate,
            "cost_table": cost_table,
            "cost_comparison": cost_comparison,
        }
