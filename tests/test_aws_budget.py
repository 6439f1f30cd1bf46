"""The environment's monthly budget (role aws_budget, module plugins/modules/aws_budget.py) against
an emulated AWS API of the module's own (moto, in this process), through ansible-playbook.

moto 5.2.5 implements CreateBudget (with its notifications and subscribers), DescribeBudget,
DeleteBudget, Create/DeleteNotification and DescribeNotificationsForBudget, but not UpdateBudget,
DescribeSubscribersForNotification, Create/DeleteSubscriber. The fixture `budgets_stand_ins` adds
those four to the in-process moto, written from the API reference: what this shows for them is
the calls the module makes and their effect, not AWS's own answers. It fails once moto has its
own, so the stand-ins are dropped then.
"""

from __future__ import annotations

import json
import re
import subprocess

import boto3
import pytest
import yaml

from conftest import BIN, ansible_env

REGION = "sa-east-1"
RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")
TAGS = {"Project": "togglemaster", "Environment": "test"}
EMAILS = ["ops@example.com", "oncall@example.com"]
DEFAULT_ALERTS = [("ACTUAL", 80.0), ("ACTUAL", 100.0), ("FORECASTED", 100.0)]
STAND_INS = ("update_budget", "describe_subscribers_for_notification", "create_subscriber", "delete_subscriber")


# --- what moto 5.2.5 lacks, as the API reference describes it -----------------------------


def _budget(response, name: str):
    from moto.budgets.exceptions import NotFoundException

    budgets = response.backend.budgets[response._get_param("AccountId")]
    if name not in budgets:
        raise NotFoundException(f"Unable to find budget: {name}")
    return budgets[name]


def _notification(response):
    from moto.budgets.exceptions import NotFoundException

    budget = _budget(response, response._get_param("BudgetName"))
    wanted = response._get_param("Notification")
    for notification in budget.notifications:
        if notification.details == wanted:
            return notification
    raise NotFoundException("Unable to find notification")


def update_budget(self) -> str:
    """Replaces the budget's properties (notifications stay), as UpdateBudget does."""
    from moto.core.utils import unix_time

    new = self._get_param("NewBudget")
    budget = _budget(self, new["BudgetName"])
    budget.budget = {**new, "TimePeriod": new.get("TimePeriod", budget.budget["TimePeriod"]), "LastUpdatedTime": unix_time()}
    return "{}"


def describe_subscribers_for_notification(self) -> str:
    return json.dumps({"Subscribers": _notification(self).subscribers})


def create_subscriber(self) -> str:
    from moto.budgets.exceptions import DuplicateRecordException

    notification, subscriber = _notification(self), self._get_param("Subscriber")
    if subscriber in notification.subscribers:
        raise DuplicateRecordException(record_type="subscriber", record_name=subscriber["Address"])
    notification.subscribers.append(subscriber)
    return "{}"


def delete_subscriber(self) -> str:
    """Deleting the last subscriber of a notification also deletes the notification (API reference)."""
    from moto.budgets.exceptions import NotFoundException

    notification, subscriber = _notification(self), self._get_param("Subscriber")
    if subscriber not in notification.subscribers:
        raise NotFoundException("Unable to find subscriber")
    notification.subscribers.remove(subscriber)
    if not notification.subscribers:
        budget = _budget(self, self._get_param("BudgetName"))
        budget.notifications = [n for n in budget.notifications if n is not notification]
    return "{}"


@pytest.fixture(scope="module")
def budgets_stand_ins():
    from moto.budgets.responses import BudgetsResponse

    implemented = [name for name in STAND_INS if hasattr(BudgetsResponse, name)]
    assert not implemented, f"moto now implements {implemented}: drop those stand-ins"
    with pytest.MonkeyPatch.context() as patch:
        for function in (update_budget, describe_subscribers_for_notification, create_subscriber, delete_subscriber):
            patch.setattr(BudgetsResponse, function.__name__, function, raising=False)
        yield


# --- the role in a play, and what AWS holds ----------------------------------------------


@pytest.fixture(scope="module")
def aws(moto_endpoint, budgets_stand_ins):
    """(budgets client, account id), as a user's boto3 would see them."""
    keys = {"endpoint_url": moto_endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    account = boto3.client("sts", region_name=REGION, **keys).get_caller_identity()["Account"]
    return boto3.client("budgets", region_name="us-east-1", **keys), account


@pytest.fixture
def budget_role(moto_endpoint, budgets_stand_ins, tmp_path):
    """Runs the role once in a tiny playbook; returns (changed, failed, output)."""

    def play(role_vars: dict, check: bool = False) -> tuple[int, int, str]:
        playbook = tmp_path / "budget.yml"
        playbook.write_text(yaml.safe_dump([{
            "name": "The environment's budget",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "module_defaults": {"aws_budget": {
                "region": REGION, "endpoint_url": moto_endpoint, "access_key": "testing", "secret_key": "testing"}},
            "vars": {"ansible_python_interpreter": str(BIN / "python"), **role_vars},
            "roles": [{"role": "aws_budget"}],
        }]))
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), *(["--check"] if check else [])]
        out = subprocess.run(cmd, cwd=tmp_path, env={**ansible_env(), "ANSIBLE_NOCOLOR": "1"},
                             capture_output=True, text=True, timeout=180)
        found = RECAP.search(out.stdout)
        assert found, out.stdout + out.stderr
        return int(found.group(1)), int(found.group(2)), out.stdout

    return play


def budget_vars(name: str, **overrides) -> dict:
    return {"aws_budget_name": name, "aws_budget_limit_usd": 50, "aws_budget_tags": TAGS,
            "aws_budget_emails": EMAILS, **overrides}


def held(aws, name: str) -> dict | None:
    """The budget AWS holds: limit, filters, and each alert (type, threshold) with its addresses."""
    budgets, account = aws
    found = [b for b in budgets.describe_budgets(AccountId=account).get("Budgets", []) if b["BudgetName"] == name]
    if not found:
        return None
    budget = found[0]
    alerts = {}
    for notification in budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)["Notifications"]:
        assert (notification["ComparisonOperator"], notification.get("ThresholdType")) == ("GREATER_THAN", "PERCENTAGE")
        subscribers = budgets.describe_subscribers_for_notification(
            AccountId=account, BudgetName=name, Notification=notification)["Subscribers"]
        assert {s["SubscriptionType"] for s in subscribers} == {"EMAIL"}
        alerts[(notification["NotificationType"], notification["Threshold"])] = sorted(s["Address"] for s in subscribers)
    return {
        "limit": float(budget["BudgetLimit"]["Amount"]),
        "unit": budget["BudgetLimit"]["Unit"],
        "type": (budget["BudgetType"], budget["TimeUnit"]),
        "filters": {key: sorted(values) for key, values in budget.get("CostFilters", {}).items()},
        "alerts": alerts,
    }


def test_budget_is_created_with_its_limit_filters_alerts_and_addresses(budget_role, aws):
    assert budget_role(budget_vars("tm-created"))[:2] == (1, 0)

    assert held(aws, "tm-created") == {
        "limit": 50.0,
        "unit": "USD",
        "type": ("COST", "MONTHLY"),
        "filters": {"TagKeyValue": ["user:Environment$test", "user:Project$togglemaster"]},
        "alerts": {alert: sorted(EMAILS) for alert in DEFAULT_ALERTS},
    }
    assert budget_role(budget_vars("tm-created"))[:2] == (0, 0), "a re-run changes nothing"
    assert budget_role(budget_vars("tm-created"), check=True)[:2] == (0, 0), "--check on a converged budget changes nothing"


def test_check_mode_reports_the_budget_and_creates_nothing(budget_role, aws):
    assert budget_role(budget_vars("tm-checked"), check=True)[:2] == (1, 0)
    assert held(aws, "tm-checked") is None


def test_a_new_limit_updates_the_budget_and_keeps_its_alerts(budget_role, aws):
    assert budget_role(budget_vars("tm-limit"))[:2] == (1, 0)

    assert budget_role(budget_vars("tm-limit", aws_budget_limit_usd="75.5"))[:2] == (1, 0)
    budget = held(aws, "tm-limit")
    assert budget["limit"] == 75.5
    assert budget["filters"] == {"TagKeyValue": ["user:Environment$test", "user:Project$togglemaster"]}
    assert budget["alerts"] == {alert: sorted(EMAILS) for alert in DEFAULT_ALERTS}
    assert budget_role(budget_vars("tm-limit", aws_budget_limit_usd="75.5"))[:2] == (0, 0)


def test_changed_addresses_and_thresholds_are_brought_in_line(budget_role, aws):
    assert budget_role(budget_vars("tm-alerts"))[:2] == (1, 0)

    # One address kept, one dropped, one added; 80% becomes 90%.
    emails = ["ops@example.com", "finance@example.com"]
    alerts = [{"type": "ACTUAL", "threshold": 90}, {"type": "ACTUAL", "threshold": 100},
              {"type": "FORECASTED", "threshold": 100}]
    changed = budget_vars("tm-alerts", aws_budget_emails=emails, aws_budget_notifications=alerts)
    assert budget_role(changed)[:2] == (1, 0)
    assert held(aws, "tm-alerts")["alerts"] == {
        ("ACTUAL", 90.0): sorted(emails), ("ACTUAL", 100.0): sorted(emails), ("FORECASTED", 100.0): sorted(emails)}
    assert budget_role(changed)[:2] == (0, 0)

    # Every address replaced at once: no alert is ever left without one.
    replaced = budget_vars("tm-alerts", aws_budget_emails=["new@example.com"], aws_budget_notifications=alerts)
    assert budget_role(replaced)[:2] == (1, 0)
    assert set(map(tuple, held(aws, "tm-alerts")["alerts"].values())) == {("new@example.com",)}


def test_absent_deletes_the_budget_and_then_changes_nothing(budget_role, aws, monkeypatch):
    assert budget_role(budget_vars("tm-gone"))[:2] == (1, 0)
    assert held(aws, "tm-gone") is not None

    # As destroy.yml runs it: the addresses may be empty by then, and only moto's own calls are
    # needed (the local environment's and molecule's emulator have no stand-ins).
    from moto.budgets.responses import BudgetsResponse

    for name in STAND_INS:
        monkeypatch.delattr(BudgetsResponse, name)
    assert budget_role(budget_vars("tm-gone", aws_budget_state="absent", aws_budget_emails=[]))[:2] == (1, 0)
    assert budget_role(budget_vars("tm-gone", aws_budget_state="absent"))[:2] == (0, 0), "absent again changes nothing"
    monkeypatch.undo()
    assert held(aws, "tm-gone") is None


@pytest.mark.parametrize("limit", [0, -5, "abc", "", True], ids=["zero", "negative", "word", "empty", "bool"])
def test_a_bad_limit_is_refused_naming_the_variable(budget_role, aws, limit):
    changed, failed, out = budget_role(budget_vars("tm-bad-limit", aws_budget_limit_usd=limit))
    assert (changed, failed) == (0, 1)
    assert "aws_budget_limit_usd (budget_limit_usd in the playbooks) must be a number of US dollars above 0" in out
    assert held(aws, "tm-bad-limit") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aws_budget_emails": ["ops@example.com", "not-an-address"]}, "not addresses: not-an-address"),
        ({"aws_budget_emails": [f"a{i}@example.com" for i in range(11)]}, "aws_budget_emails (budget_emails in the playbooks) must list 1 to 10"),
        ({"aws_budget_notifications": [{"type": "ACTUAL", "threshold": 0}]}, "aws_budget_notifications must list each alert once"),
        ({"aws_budget_notifications": [{"type": "PLANNED", "threshold": 80}]}, "aws_budget_notifications must list each alert once"),
        ({"aws_budget_name": "tm:bad"}, "aws_budget_name must be a budget name"),
    ],
    ids=["bad-address", "eleven-addresses", "zero-threshold", "unknown-type", "colon-in-name"],
)
def test_other_bad_inputs_are_refused_naming_the_variable(budget_role, aws, overrides, message):
    changed, failed, out = budget_role(budget_vars("tm-bad-input", **overrides))
    assert (changed, failed) == (0, 1)
    assert message in out
    assert held(aws, "tm-bad-input") is None


def test_no_addresses_means_no_budget(budget_role, aws):
    changed, failed, out = budget_role(budget_vars("tm-off", aws_budget_emails=[], aws_budget_limit_usd="not checked"))
    assert (changed, failed) == (0, 0)
    assert "No budget: aws_budget_emails (budget_emails in the playbooks) is empty" in out
    assert held(aws, "tm-off") is None
