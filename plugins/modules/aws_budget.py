#!/usr/bin/python
# -*- coding: utf-8 -*-
# A monthly AWS Budgets cost budget with e-mail alerts; amazon.aws and community.aws have no budgets module.
from __future__ import annotations

DOCUMENTATION = r"""
module: aws_budget
short_description: A monthly AWS Budgets cost budget with e-mail alerts
description:
  - Creates, updates or deletes one monthly C(COST) budget of the account the credentials belong
    to (the account id comes from STS C(GetCallerIdentity)).
  - The budget tracks O(cost_filters) against O(limit_usd) and alerts every address of
    O(subscribers_email) at each of O(notifications), a percentage of the limit of the actual or
    the forecasted spend (comparison C(GREATER_THAN), threshold type C(PERCENTAGE)).
  - The module owns the budget it names. It compares the limit, the cost filters, the
    notifications and each notification's subscribers with the desired ones and changes only what
    differs - C(UpdateBudget) for the limit and filters, C(CreateNotification) and
    C(DeleteNotification) for notifications, C(CreateSubscriber) and C(DeleteSubscriber) for
    addresses - so a run with nothing to change makes no write call and returns C(changed=false).
    Notifications and subscribers it was not given, made by hand, are deleted.
  - A notification is identified by its type, comparison, threshold and threshold type, as AWS
    identifies it, so a changed threshold deletes the old notification and creates the new one.
  - The Budgets API is global. The module calls it in C(us-east-1) whatever O(region) is, at
    O(endpoint_url) when given (an emulator).
  - Supports check mode and diff mode.
author: ToggleMaster Deploy maintainers
options:
  name:
    description:
      - The budget's name, unique in the account. C(:) and C(\) are not allowed.
    type: str
    required: true
  state:
    description:
      - C(present) creates or updates the budget; C(absent) deletes it (with its notifications and
        subscribers), and does nothing when there is none.
    type: str
    choices: [present, absent]
    default: present
  limit_usd:
    description:
      - The monthly limit in US dollars, above 0. Required with O(state=present).
    type: float
  cost_filters:
    description:
      - The budget's C(CostFilters), a mapping of filter name to a list of values, for example
        the filter C(TagKeyValue) with the value C(user:Project$togglemaster). An empty mapping
        tracks the whole account.
      - Values of one filter match any of them (OR); separate filters must all match (AND).
      - A tag filter (C(TagKeyValue), C(user:KEY$VALUE)) matches nothing until the tag key is
        activated as a cost-allocation tag in the account's billing settings.
    type: dict
    default: {}
  notifications:
    description:
      - When to alert, as percentages of O(limit_usd). Each pair of type and threshold at most once.
    type: list
    elements: dict
    default:
      - {type: ACTUAL, threshold: 80}
      - {type: ACTUAL, threshold: 100}
      - {type: FORECASTED, threshold: 100}
    suboptions:
      type:
        description: C(ACTUAL) (spent so far this month) or C(FORECASTED) (expected by the month's end).
        type: str
        choices: [ACTUAL, FORECASTED]
        required: true
      threshold:
        description: Percent of the limit, above 0.
        type: float
        required: true
  subscribers_email:
    description:
      - The e-mail addresses every notification goes to, 1 to 10 (the AWS limit per notification).
        Required with O(state=present).
    type: list
    elements: str
notes:
  - Needs C(sts:GetCallerIdentity), C(budgets:ViewBudget) and C(budgets:ModifyBudget).
  - AWS sends an alert to an address without asking it to confirm first (unlike SNS e-mail).
  - Only the standard partition (C(aws)) is handled; the Budgets endpoint is called in C(us-east-1).
  - Other properties of an existing budget (cost types, time period) are kept on update. A budget
    of the same name with another type or time unit is refused, not converted.
  - B(What was verified, and against what.) Only against the emulator moto 5.2.5, never against
    real AWS. moto implements C(CreateBudget) (with C(NotificationsWithSubscribers)),
    C(DescribeBudget), C(DeleteBudget), C(CreateNotification), C(DeleteNotification) and
    C(DescribeNotificationsForBudget). It does NOT implement C(UpdateBudget),
    C(DescribeSubscribersForNotification), C(CreateSubscriber) or C(DeleteSubscriber) (HTTP 500,
    NotImplementedError); the repository's test adds stand-ins for those four to its in-process
    moto, written from the API reference, so the calls and their order are tested but AWS's own
    answers to them are not. Real AWS may also return fields moto does not (for example
    C(FilterExpression) mirroring C(CostFilters)); the update sends only C(BudgetName),
    C(BudgetLimit), C(CostFilters), C(CostTypes), C(TimeUnit), C(TimePeriod) and C(BudgetType).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Production's monthly budget, alerting ops
  aws_budget:
    name: togglemaster-production
    limit_usd: 120
    cost_filters:
      TagKeyValue: ["user:Project$togglemaster", "user:Environment$production"]
    subscribers_email: [ops@example.com]

- name: Alert only when the month is forecast to pass the limit
  aws_budget:
    name: togglemaster-staging
    limit_usd: 40
    notifications:
      - {type: FORECASTED, threshold: 100}
    subscribers_email: [dev@example.com]

- name: The budget is gone
  aws_budget:
    name: togglemaster-staging
    state: absent
"""

RETURN = r"""
account_id:
  description: The account the budget belongs to.
  returned: always
  type: str
  sample: "123456789012"
budget:
  description:
    - The budget as it is after the run (with O(state=absent), as it was before, without its
      notifications), or null when there is none. Notifications are sorted by type and
      threshold, addresses alphabetically.
  returned: always
  type: dict
  sample:
    name: togglemaster-production
    limit_usd: "120"
    cost_filters: {"TagKeyValue": ["user:Environment$production", "user:Project$togglemaster"]}
    notifications:
      - {type: ACTUAL, threshold: 80.0, subscribers: [ops@example.com]}
      - {type: ACTUAL, threshold: 100.0, subscribers: [ops@example.com]}
      - {type: FORECASTED, threshold: 100.0, subscribers: [ops@example.com]}
changes:
  description: What was changed (or, in check mode, would be), one line each, in order.
  returned: always
  type: list
  elements: str
  sample: ["update budget limit and filters", "create notification ACTUAL 90%"]
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Any

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError
except ImportError:
    pass  # Reported by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

Client = Any  # a boto3 client
Spec = dict[str, Any]  # a budget as this module compares it

BUDGETS_REGION = "us-east-1"  # the Budgets API is global; its endpoint signs for us-east-1
MAX_SUBSCRIBERS = 10  # e-mail subscribers per notification
COMPARISON = "GREATER_THAN"
THRESHOLD_TYPE = "PERCENTAGE"
# What UpdateBudget is sent of an existing budget; anything else it returns is left out.
UPDATABLE = ("BudgetName", "BudgetLimit", "CostFilters", "CostTypes", "TimeUnit", "TimePeriod", "BudgetType")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_NOTIFICATIONS = [
    {"type": "ACTUAL", "threshold": 80.0},
    {"type": "ACTUAL", "threshold": 100.0},
    {"type": "FORECASTED", "threshold": 100.0},
]


@AWSRetry.jittered_backoff()
def call(client: Client, operation: str, **params: Any) -> dict:
    return getattr(client, operation)(**params)


@AWSRetry.jittered_backoff()
def paginate(client: Client, operation: str, key: str, **params: Any) -> list[dict]:
    return client.get_paginator(operation).paginate(**params).build_full_result().get(key, [])


# --- the budget as compared ---------------------------------------------------------------


def amount(value: Any) -> str:
    """A dollar amount as the shortest decimal string: 50, 50.0 and "50.00" are all "50"."""
    number = Decimal(str(value)).normalize()
    return format(number, "f")


def notification_key(notification: dict) -> tuple:
    """How AWS tells notifications apart."""
    return (
        notification["NotificationType"],
        notification["ComparisonOperator"],
        float(notification["Threshold"]),
        notification.get("ThresholdType", THRESHOLD_TYPE),
    )


def notification_body(key: tuple) -> dict:
    """The Notification argument of the Budgets calls, from its key."""
    kind, comparison, threshold, threshold_type = key
    return {"NotificationType": kind, "ComparisonOperator": comparison, "Threshold": threshold,
            "ThresholdType": threshold_type}


def desired_key(notification: dict) -> tuple:
    return (notification["type"], COMPARISON, float(notification["threshold"]), THRESHOLD_TYPE)


def describe_key(key: tuple) -> str:
    kind, comparison, threshold, threshold_type = key
    text = f"{kind} {threshold:g}{'%' if threshold_type == THRESHOLD_TYPE else ' USD'}"
    return text if comparison == COMPARISON else f"{text} ({comparison})"


def shown(name: str, limit: str, filters: dict, notifications: dict[tuple, set[str]]) -> Spec:
    """The budget as returned and diffed: plain, sorted, comparable."""
    return {
        "name": name,
        "limit_usd": limit,
        "cost_filters": {key: sorted(values) for key, values in sorted(filters.items())},
        "notifications": [
            {"type": key[0], "threshold": key[2], "subscribers": sorted(addresses),
             **({} if key[1:4:2] == (COMPARISON, THRESHOLD_TYPE) else {"comparison": key[1], "threshold_type": key[3]})}
            for key, addresses in sorted(notifications.items())
        ],
    }


# --- reading -------------------------------------------------------------------------------


def account_id(module: AnsibleAWSModule) -> str:
    return call(module.client("sts"), "get_caller_identity")["Account"]


def existing_budget(budgets: Client, account: str, name: str) -> dict | None:
    try:
        return call(budgets, "describe_budget", AccountId=account, BudgetName=name)["Budget"]
    except is_boto3_error_code("NotFoundException"):
        return None


def existing_notifications(budgets: Client, account: str, name: str) -> dict[tuple, set[str]]:
    """Each notification of the budget with the e-mail addresses (and SNS topics) it goes to."""
    found: dict[tuple, set[str]] = {}
    for notification in paginate(budgets, "describe_notifications_for_budget", "Notifications",
                                 AccountId=account, BudgetName=name):
        key = notification_key(notification)
        subscribers = paginate(budgets, "describe_subscribers_for_notification", "Subscribers",
                               AccountId=account, BudgetName=name, Notification=notification_body(key))
        found[key] = {subscriber["Address"] for subscriber in subscribers}
    return found


# --- changing ------------------------------------------------------------------------------


class Changes:
    """Runs each change (or only records it in check mode) and keeps the list of what changed."""

    def __init__(self, module: AnsibleAWSModule, budgets: Client, account: str, name: str) -> None:
        self.module, self.budgets, self.account, self.name = module, budgets, account, name
        self.done: list[str] = []

    def make(self, what: str, operation: str, **params: Any) -> None:
        self.done.append(what)
        if not self.module.check_mode:
            call(self.budgets, operation, AccountId=self.account, **params)


def subscribers(addresses: set[str] | list[str]) -> list[dict]:
    return [{"SubscriptionType": "EMAIL", "Address": address} for address in sorted(addresses)]


def create(changes: Changes, limit: str, filters: dict, wanted: dict[tuple, set[str]]) -> None:
    budget = {"BudgetName": changes.name, "BudgetLimit": {"Amount": limit, "Unit": "USD"}, "CostFilters": filters,
              "TimeUnit": "MONTHLY", "BudgetType": "COST"}
    changes.make(
        "create budget", "create_budget", Budget=budget,
        NotificationsWithSubscribers=[
            {"Notification": notification_body(key), "Subscribers": subscribers(addresses)}
            for key, addresses in sorted(wanted.items())
        ],
    )


def update_budget(changes: Changes, current: dict, limit: str, filters: dict) -> None:
    new = {field: current[field] for field in UPDATABLE if field in current}
    new.update(BudgetLimit={"Amount": limit, "Unit": "USD"}, CostFilters=filters)
    changes.make("update budget limit and filters", "update_budget", NewBudget=new)


def update_subscribers(changes: Changes, key: tuple, have: set[str], want: set[str]) -> None:
    """Extra addresses go first, so a notification never passes the 10 allowed; an overlap
    keeps it from ever having none."""
    for address in sorted(have - want):
        changes.make(f"delete subscriber {address} of {describe_key(key)}", "delete_subscriber",
                     BudgetName=changes.name, Notification=notification_body(key),
                     Subscriber={"SubscriptionType": "EMAIL", "Address": address})
    for address in sorted(want - have):
        changes.make(f"create subscriber {address} of {describe_key(key)}", "create_subscriber",
                     BudgetName=changes.name, Notification=notification_body(key),
                     Subscriber={"SubscriptionType": "EMAIL", "Address": address})


def update_notifications(changes: Changes, have: dict[tuple, set[str]], want: dict[tuple, set[str]]) -> None:
    """Extra notifications go first (a budget holds a limited number); a notification whose
    addresses are all replaced is deleted and created again, as it needs one subscriber at least."""
    replaced = {key for key in have.keys() & want.keys() if not have[key] & want[key]}
    for key in sorted((have.keys() - want.keys()) | replaced):
        changes.make(f"delete notification {describe_key(key)}", "delete_notification",
                     BudgetName=changes.name, Notification=notification_body(key))
    for key in sorted((want.keys() - have.keys()) | replaced):
        changes.make(f"create notification {describe_key(key)}", "create_notification",
                     BudgetName=changes.name, Notification=notification_body(key),
                     Subscribers=subscribers(want[key]))
    for key in sorted(have.keys() & want.keys() - replaced):
        if have[key] != want[key]:
            update_subscribers(changes, key, have[key], want[key])


# --- module --------------------------------------------------------------------------------


def checked_params(module: AnsibleAWSModule) -> tuple[str, dict, dict[tuple, set[str]]]:
    """The desired limit, filters and notifications; fails naming the option that is wrong."""
    params = module.params
    name = params["name"]
    if not name or ":" in name or "\\" in name:
        module.fail_json(msg=f"name must be a budget name without ':' or '\\' (got {name!r})")
    if params["state"] == "absent":
        return "", {}, {}
    try:
        limit = amount(params["limit_usd"])
    except (InvalidOperation, ValueError):
        limit = "0"
    if Decimal(limit) <= 0:
        module.fail_json(msg=f"limit_usd must be a number of US dollars above 0 (got {params['limit_usd']!r})")
    filters = params["cost_filters"] or {}
    for key, values in filters.items():
        if not isinstance(values, list) or not values or not all(isinstance(value, str) and value for value in values):
            module.fail_json(msg=f"cost_filters.{key} must be a non-empty list of strings (got {values!r})")
    addresses = params["subscribers_email"] or []
    if not 1 <= len(addresses) <= MAX_SUBSCRIBERS or len(set(addresses)) != len(addresses):
        module.fail_json(
            msg=f"subscribers_email must list 1 to {MAX_SUBSCRIBERS} different addresses (got {addresses!r})")
    bad = [address for address in addresses if not EMAIL.match(address)]
    if bad:
        module.fail_json(msg=f"subscribers_email: not an e-mail address: {', '.join(bad)}")
    keys = [desired_key(notification) for notification in params["notifications"]]
    if not keys or len(set(keys)) != len(keys) or any(key[2] <= 0 for key in keys):
        module.fail_json(msg="notifications must list each type and threshold (above 0) once, and at least one")
    return limit, {key: list(values) for key, values in filters.items()}, {key: set(addresses) for key in keys}


def run(module: AnsibleAWSModule) -> dict:
    params = module.params
    name = params["name"]
    limit, filters, wanted = checked_params(module)
    account = account_id(module)
    budgets = module.client("budgets", region=BUDGETS_REGION)
    changes = Changes(module, budgets, account, name)

    current = existing_budget(budgets, account, name)
    # Deleting needs no notification read (DeleteBudget takes them along), so destroy also works
    # where DescribeSubscribersForNotification does not (moto).
    have = existing_notifications(budgets, account, name) if current and params["state"] == "present" else {}
    before = None
    if current:
        have_limit = amount(current.get("BudgetLimit", {}).get("Amount", "0"))
        before = shown(name, have_limit, current.get("CostFilters") or {}, have)

    if params["state"] == "absent":
        if current:
            changes.make("delete budget", "delete_budget", BudgetName=name)
        return {"account_id": account, "budget": before, "changes": changes.done,
                "diff": {"before": before or {}, "after": {}}}

    after = shown(name, limit, filters, wanted)
    if not current:
        create(changes, limit, filters, wanted)
    else:
        for field, value in (("BudgetType", "COST"), ("TimeUnit", "MONTHLY")):
            if current.get(field) != value:
                module.fail_json(msg=f"budget {name} exists with {field} {current.get(field)}, not {value}: "
                                     "delete it or choose another name")
        if (before["limit_usd"], before["cost_filters"]) != (after["limit_usd"], after["cost_filters"]):
            update_budget(changes, current, limit, filters)
        update_notifications(changes, have, wanted)
    return {"account_id": account, "budget": after, "changes": changes.done,
            "diff": {"before": before or {}, "after": after}}


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            limit_usd=dict(type="float"),
            cost_filters=dict(type="dict", default={}),
            notifications=dict(
                type="list", elements="dict", default=DEFAULT_NOTIFICATIONS,
                options=dict(
                    type=dict(type="str", choices=["ACTUAL", "FORECASTED"], required=True),
                    threshold=dict(type="float", required=True),
                ),
            ),
            subscribers_email=dict(type="list", elements="str"),
        ),
        required_if=[("state", "present", ("limit_usd", "subscribers_email"))],
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"Budget {module.params['name']}")
    if not module._diff:
        result.pop("diff")
    module.exit_json(changed=bool(result["changes"]), **result)


if __name__ == "__main__":
    main()
