"""The aws_rds role's engine version, storage and window decisions.

Three layers:
- the pure decisions (roles/aws_rds/filter_plugins/rds_version.py) as functions;
- the role's checks through ansible-playbook, before any API call (a closed endpoint);
- the role's real tasks through ansible-playbook against a fake RDS endpoint on loopback. The
  emulator (moto) does not implement DescribeDBEngineVersions, so the fake endpoint answers that
  action itself, in the query-protocol XML botocore's RDS model describes, and passes every
  other request on to an in-process moto server. Each request is recorded, so a test can say
  which calls the role made and with what.

No test ever reaches AWS: fake credentials, loopback endpoints only, and a closed proxy for
anything else.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlparse
from xml.sax.saxutils import escape

import boto3
import pytest
import yaml

from conftest import BIN, ROOT, ansible_env

ROLE_TASK = "PostgreSQL instance runs"
CLOSED = "http://127.0.0.1:9"
CONNECTION_ERROR = ("Could not connect", "EndpointConnectionError", "Connection refused")

# What the fake endpoint says RDS's default minor of each major is. 99 has none.
FAKE_DEFAULTS = {"16": "16.11", "17": "17.7"}


def load_filters():
    spec = importlib.util.spec_from_file_location("rds_version", ROOT / "roles/aws_rds/filter_plugins/rds_version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rv = load_filters()


def instance(version: str, pending: str | None = None, storage: int = 20, pending_storage: int | None = None) -> list[dict]:
    """rds_instance_info's answer for one instance (snake_case keys)."""
    pending_values = {}
    if pending:
        pending_values["engine_version"] = pending
    if pending_storage:
        pending_values["allocated_storage"] = pending_storage
    return [{"engine_version": version, "allocated_storage": storage, "pending_modified_values": pending_values}]


# ---------------------------------------------------------------------------------------------
# The pure decisions


@pytest.mark.parametrize(
    ("running", "requested", "expected"),
    [
        ("16.8", "16", True),
        ("16.13", "16", True),
        ("17.2", "16", True),
        ("15.10", "16", False),
        ("16.11", "16.11", True),
        ("16.12", "16.11", True),
        ("16.9", "16.11", False),  # numerically, not as text: 9 < 11
        ("16.10", "16.9", True),
        ("", "16", False),
    ],
)
def test_running_version_satisfies_the_request_numerically(running, requested, expected):
    assert rv.rds_version_satisfies(running, requested) is expected


@pytest.mark.parametrize("value", ["16", "16.11", "9", 16])
def test_majors_and_major_minors_are_valid_versions(value):
    assert rv.rds_version_valid(value)


@pytest.mark.parametrize("value", ["sixteen", "16.", ".11", "16.11.1", "v16", "", " 16", "016", 16.1, True, None])
def test_junk_and_floats_are_not_valid_versions(value):
    assert not rv.rds_version_valid(value)


def test_a_bare_major_at_create_takes_the_looked_up_default():
    assert rv.rds_version_plan("16", [])["lookup"] is True
    assert rv.rds_version_plan("16", [])["version"] == ""  # nothing to send until the lookup answered
    plan = rv.rds_version_plan("16", [], [{"engine_version": "16.11"}])
    assert plan == {"running": "", "version": "16.11", "lookup": True, "major_upgrade": False}


def test_a_default_of_another_major_is_not_taken():
    assert rv.rds_version_plan("16", [], [{"engine_version": "17.7"}])["version"] == ""


def test_an_explicit_minor_needs_no_lookup():
    plan = rv.rds_version_plan("16.11", [])
    assert plan == {"running": "", "version": "16.11", "lookup": False, "major_upgrade": False}


@pytest.mark.parametrize("requested", ["16", "16.8", "16.11", "16.13"])
def test_an_instance_upgraded_by_aws_keeps_its_version(requested):
    plan = rv.rds_version_plan(requested, instance("16.13"))
    assert plan == {"running": "16.13", "version": "16.13", "lookup": False, "major_upgrade": False}


def test_a_higher_explicit_minor_is_sent_as_an_upgrade():
    plan = rv.rds_version_plan("16.14", instance("16.13"))
    assert plan["version"] == "16.14" and not plan["lookup"] and not plan["major_upgrade"]


def test_a_higher_major_is_looked_up_and_flagged_as_a_major_upgrade():
    assert rv.rds_version_plan("17", instance("16.13"))["lookup"] is True
    plan = rv.rds_version_plan("17", instance("16.13"), [{"engine_version": "17.7"}])
    assert plan["version"] == "17.7" and plan["major_upgrade"] is True
    assert rv.rds_version_plan("17.2", instance("16.13"))["major_upgrade"] is True


def test_a_pending_upgrade_counts_as_the_running_version():
    plan = rv.rds_version_plan("17", instance("16.13", pending="17.7"))
    assert plan == {"running": "17.7", "version": "17.7", "lookup": False, "major_upgrade": False}


@pytest.mark.parametrize(
    ("requested", "instances", "expected"),
    [
        (20, [], 20),
        (20, instance("16.11", storage=20), 20),
        (20, instance("16.11", storage=31), 31),  # grown by storage autoscaling: not shrunk
        (20, instance("16.11", storage=20, pending_storage=25), 25),
        (50, instance("16.11", storage=31), 50),
    ],
)
def test_storage_is_never_sent_below_what_the_instance_has(requested, instances, expected):
    assert rv.rds_allocated_storage(requested, instances) == expected


@pytest.mark.parametrize("window", ["03:00-04:00", "23:45-00:15", "00:00-23:59"])
def test_backup_windows_rds_accepts(window):
    assert rv.rds_backup_window_error(window) == ""


@pytest.mark.parametrize(
    ("window", "reason"),
    [("03:00-03:29", "shorter than 30 minutes"), ("3:00-4:00", "hh24:mi-hh24:mi"), ("24:00-01:00", "hh24:mi-hh24:mi"),
     ("sun:03:00-sun:04:00", "hh24:mi-hh24:mi"), (300, "hh24:mi-hh24:mi")],
)
def test_backup_windows_rds_refuses(window, reason):
    assert reason in rv.rds_backup_window_error(window)


@pytest.mark.parametrize("window", ["sun:04:30-sun:05:30", "Sun:23:45-Mon:00:15", "sat:22:00-sun:22:00"])
def test_maintenance_windows_rds_accepts(window):
    assert rv.rds_maintenance_window_error(window) == ""


@pytest.mark.parametrize(
    ("window", "reason"),
    [("sun:04:30-sun:04:45", "shorter than 30 minutes"), ("sat:04:00-sun:04:01", "longer than 24 hours"),
     ("04:30-05:30", "ddd:hh24:mi-ddd:hh24:mi"), ("sun:4:30-sun:5:30", "ddd:hh24:mi-ddd:hh24:mi"),
     ("dom:04:30-dom:05:30", "ddd:hh24:mi-ddd:hh24:mi")],
)
def test_maintenance_windows_rds_refuses(window, reason):
    assert reason in rv.rds_maintenance_window_error(window)


@pytest.mark.parametrize(
    ("backup", "maintenance", "overlap"),
    [
        ("03:00-04:00", "sun:04:30-sun:05:30", False),
        ("03:00-04:00", "sun:03:30-sun:04:30", True),
        ("03:00-04:00", "wed:02:00-wed:03:30", True),  # any day: backups run daily
        ("03:00-04:00", "sun:04:00-sun:05:00", True),  # touching counts (the emulator refuses it too)
        ("23:30-00:30", "mon:00:15-mon:01:00", True),  # the backup window crosses midnight
        ("23:30-00:30", "mon:00:31-mon:01:30", False),
        ("01:00-02:00", "sun:23:00-mon:01:00", True),  # the maintenance window crosses the week's end
        ("01:00-02:00", "sun:23:00-mon:00:59", False),
    ],
)
def test_windows_overlap_on_any_day_of_the_week(backup, maintenance, overlap):
    assert rv.rds_windows_overlap(backup, maintenance) is overlap


# ---------------------------------------------------------------------------------------------
# ansible-playbook with the role


def aws_env(endpoint: str) -> dict[str, str]:
    """Fake credentials and one loopback endpoint for every AWS client; nothing else reachable."""
    assert urlparse(endpoint).hostname == "127.0.0.1", endpoint
    env = ansible_env()
    for key in list(env):
        if key.startswith("AWS_"):
            del env[key]
    env.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_REGION": "sa-east-1", "AWS_DEFAULT_REGION": "sa-east-1",
        "AWS_ENDPOINT_URL": endpoint, "AWS_URL": endpoint, "AWS_MAX_ATTEMPTS": "1",
        "HTTP_PROXY": CLOSED, "HTTPS_PROXY": CLOSED, "NO_PROXY": "127.0.0.1,localhost",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_FORCE_COLOR": "0",
    })
    return env


PLAY = """\
- name: The aws_rds role alone
  hosts: localhost
  gather_facts: false
  vars:
    aws_rds_identifier: togglemaster-rdstest-db
    aws_rds_master_password: not-a-real-password-1
    aws_rds_tags: {Project: togglemaster, Environment: rdstest}
  tasks:
    - name: The role runs
      ansible.builtin.include_role:
        name: aws_rds
        tasks_from: "{{ rds_tasks_from | default('main') }}"
"""


class Run:
    """One ansible-playbook run's outcome, from the json callback."""

    def __init__(self, result: subprocess.CompletedProcess):
        self.returncode = result.returncode
        self.text = result.stdout + result.stderr
        # ansible.cfg's profile_tasks callback prints around the JSON document: read the document.
        start = result.stdout.find("\n{\n") + 1 if not result.stdout.startswith("{") else 0
        try:
            self.plays = json.JSONDecoder().raw_decode(result.stdout[start:])[0]["plays"]
        except (ValueError, KeyError):
            self.plays = []

    def task(self, name: str) -> dict | None:
        for play in self.plays:
            for task in play["tasks"]:
                if name in task["task"]["name"]:
                    return task["hosts"]["localhost"]
        return None

    @property
    def failure(self) -> str:
        for play in self.plays:
            for task in play["tasks"]:
                answer = task["hosts"].get("localhost", {})
                if answer.get("failed"):
                    return str(answer.get("msg"))
        return self.text[-3000:]


def playbook(tmp_path: Path, endpoint: str, extra: dict) -> Run:
    play = tmp_path / "rds.yml"
    play.write_text(PLAY, encoding="utf-8")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}), encoding="utf-8")
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(play), "-e", json.dumps(extra)],
        cwd=ROOT, env=aws_env(endpoint), capture_output=True, text=True, timeout=300, check=False,
    )
    return Run(result)


# ---- checks before any API call (a closed endpoint: any call would fail to connect)

GOOD = {"aws_rds_subnet_ids": ["subnet-1", "subnet-2"], "aws_rds_security_group_ids": ["sg-1"]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"aws_rds_engine_version": "sixteen"}, "aws_rds_engine_version must be a major"),
        ({"aws_rds_engine_version": "16.11.1"}, "aws_rds_engine_version must be a major"),
        ({"aws_rds_engine_version": 16.1}, "aws_rds_engine_version must be a major"),
        ({"aws_rds_preferred_backup_window": "3:00-4:00"}, "aws_rds_preferred_backup_window: '3:00-4:00' is not hh24:mi-hh24:mi"),
        ({"aws_rds_preferred_backup_window": "03:00-03:15"}, "aws_rds_preferred_backup_window: '03:00-03:15' is shorter than 30 minutes"),
        ({"aws_rds_preferred_maintenance_window": "sunday:04:30-sunday:05:30"}, "aws_rds_preferred_maintenance_window: 'sunday:04:30-sunday:05:30' is not ddd:hh24:mi-ddd:hh24:mi"),
        ({"aws_rds_preferred_backup_window": "03:00-04:00", "aws_rds_preferred_maintenance_window": "sun:03:30-sun:04:30"},
         "aws_rds_preferred_backup_window 03:00-04:00 overlaps or touches aws_rds_preferred_maintenance_window sun:03:30-sun:04:30"),
        ({"aws_rds_max_allocated_storage": 20}, "aws_rds_max_allocated_storage (20) must be more than aws_rds_allocated_storage (20) GiB"),
    ],
    ids=["version-word", "version-three-parts", "version-float", "backup-format", "backup-short",
         "maintenance-format", "windows-overlap", "max-storage-not-above"],
)
def test_bad_value_fails_with_one_line_naming_the_variable_before_any_api_call(tmp_path, extra, message):
    run = playbook(tmp_path, CLOSED, {**GOOD, **extra})
    assert run.returncode != 0, "the role must refuse this value"
    assert message in run.failure, run.failure
    assert "\n" not in run.failure.strip(), "the message is one line"
    assert not any(marker in run.text for marker in CONNECTION_ERROR), "an API call was made before the check"


def test_production_settings_pass_the_role_checks_and_staging_stays_single_az(host_vars, tmp_path):
    production = host_vars("production", "localhost")
    staging = host_vars("staging", "localhost")
    assert production["aws_rds_multi_az"] is True
    assert production["aws_rds_max_allocated_storage"] > 20
    assert not rv.rds_windows_overlap(production["aws_rds_preferred_backup_window"], production["aws_rds_preferred_maintenance_window"])
    assert not any(key in staging for key in ("aws_rds_multi_az", "aws_rds_preferred_backup_window", "aws_rds_max_allocated_storage"))
    # The environment's own settings; the shared mapping onto project variables is not in this play.
    settings = {key: value for key, value in production.items()
                if key.startswith("aws_rds_") and "{{" not in str(value)}
    run = playbook(tmp_path, CLOSED, {**GOOD, **settings, "rds_tasks_from": "inputs.yml"})
    assert run.returncode == 0, run.failure
    for check in ("The backup window is", "The maintenance window is", "windows are apart", "autoscaling ceiling"):
        answer = run.task(check)
        assert answer is not None and not answer.get("skipped"), f"the check '{check}' did not run"


@pytest.mark.parametrize("version", ["16", "16.11", 16], ids=["major", "major-minor", "major-unquoted"])
def test_majors_and_explicit_minors_pass_the_role_checks(tmp_path, version):
    run = playbook(tmp_path, CLOSED, {**GOOD, "aws_rds_engine_version": version, "rds_tasks_from": "inputs.yml"})
    assert run.returncode == 0, run.failure
    assert run.task("The engine version is a major or a major.minor") is not None


# ---- the real tasks against the fake RDS endpoint (moto behind it for everything else)


def engine_versions_xml(params: dict[str, str]) -> bytes:
    """DescribeDBEngineVersions' answer, shaped like botocore's RDS model (DBEngineVersionMessage).

    Like RDS for EngineVersion=<major> with DefaultOnly=true ("the default version of the
    specified engine or the engine and major version combination"): the major's default minor.
    """
    wanted = params.get("EngineVersion", "")
    versions = [v for major, v in FAKE_DEFAULTS.items() if wanted in (major, v)]
    members = "".join(
        "<DBEngineVersion>"
        f"<Engine>postgres</Engine><EngineVersion>{escape(v)}</EngineVersion>"
        f"<MajorEngineVersion>{escape(v.split('.')[0])}</MajorEngineVersion>"
        f"<DBParameterGroupFamily>postgres{escape(v.split('.')[0])}</DBParameterGroupFamily>"
        "<DBEngineDescription>PostgreSQL</DBEngineDescription>"
        f"<DBEngineVersionDescription>PostgreSQL {escape(v)}-R1</DBEngineVersionDescription>"
        "<Status>available</Status><SupportsReadReplica>true</SupportsReadReplica>"
        "</DBEngineVersion>"
        for v in versions
    )
    return (
        '<DescribeDBEngineVersionsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
        f"<DescribeDBEngineVersionsResult><DBEngineVersions>{members}</DBEngineVersions></DescribeDBEngineVersionsResult>"
        "<ResponseMetadata><RequestId>fake-rds-engine-versions</RequestId></ResponseMetadata>"
        "</DescribeDBEngineVersionsResponse>"
    ).encode()


class FakeRds:
    """The fake endpoint: answers DescribeDBEngineVersions, passes the rest to moto, records all."""

    def __init__(self, moto_port: int):
        self.calls: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                params = dict(parse_qsl(body.decode(errors="replace")))
                fake.calls.append(params)
                if params.get("Action") == "DescribeDBEngineVersions":
                    self.answer(200, {"Content-Type": "text/xml"}, engine_versions_xml(params))
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=60)
                upstream.request("POST", self.path, body=body, headers=dict(self.headers))
                reply = upstream.getresponse()
                self.answer(reply.status, {"Content-Type": reply.getheader("Content-Type", "text/xml")}, reply.read())
                upstream.close()

            def answer(self, status: int, headers: dict, payload: bytes):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def actions(self, name: str, identifier: str | None = None) -> list[dict[str, str]]:
        return [c for c in self.calls if c.get("Action") == name
                and (identifier is None or c.get("DBInstanceIdentifier") == identifier)]


@pytest.fixture(scope="module")
def rds_api(moto_endpoint):
    port = int(moto_endpoint.rsplit(":", 1)[1])
    fake = FakeRds(port)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="sa-east-1")
    ec2 = session.client("ec2", endpoint_url=f"http://127.0.0.1:{port}")
    vpc = ec2.create_vpc(CidrBlock="10.44.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.44.{n}.0/24", AvailabilityZone=f"sa-east-1{zone}")["Subnet"]["SubnetId"]
               for n, zone in ((10, "a"), (11, "c"))]
    group = ec2.create_security_group(GroupName="rdstest-db", Description="db", VpcId=vpc)["GroupId"]
    fake.network = {"aws_rds_subnet_ids": subnets, "aws_rds_security_group_ids": [group],
                    # moto omits gp3 throughput and IOPS unless sent (the local inventory does the same)
                    "aws_rds_storage_throughput": 125, "aws_rds_iops": 3000}
    fake.rds = session.client("rds", endpoint_url=f"http://127.0.0.1:{port}")
    yield fake
    fake.server.shutdown()


def provision(tmp_path: Path, api: FakeRds, identifier: str, **extra) -> Run:
    api.calls.clear()
    return playbook(tmp_path, api.url, {**api.network, "aws_rds_identifier": identifier, **extra})


def running(api: FakeRds, identifier: str) -> dict:
    return api.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]


def aws_upgrades(api: FakeRds, identifier: str, **change) -> None:
    """What AWS does on its own: a minor upgrade in the maintenance window, storage autoscaling."""
    api.rds.modify_db_instance(DBInstanceIdentifier=identifier, ApplyImmediately=True, **change)


def test_bare_major_creates_at_the_regions_default_minor(tmp_path, rds_api):
    run = provision(tmp_path, rds_api, "rds-major")  # the role default: "16"
    assert run.returncode == 0, run.failure
    lookups = rds_api.actions("DescribeDBEngineVersions")
    assert [(c.get("Engine"), c.get("EngineVersion"), c.get("DefaultOnly")) for c in lookups] == [("postgres", "16", "true")]
    [create] = rds_api.actions("CreateDBInstance", "rds-major")
    assert create["EngineVersion"] == FAKE_DEFAULTS["16"]
    assert running(rds_api, "rds-major")["EngineVersion"] == FAKE_DEFAULTS["16"]


def test_aws_minor_upgrade_is_kept_without_change_or_lookup(tmp_path, rds_api):
    assert provision(tmp_path, rds_api, "rds-auto").returncode == 0
    aws_upgrades(rds_api, "rds-auto", EngineVersion="16.13")
    for requested in ("16", "16.11"):
        run = provision(tmp_path, rds_api, "rds-auto", aws_rds_engine_version=requested)
        assert run.returncode == 0, run.failure
        assert run.task(ROLE_TASK)["changed"] is False, f"{requested}: AWS's minor upgrade reported as a change"
        assert rds_api.actions("ModifyDBInstance") == [], f"{requested}: a modification was sent"
        assert rds_api.actions("DescribeDBEngineVersions") == [], f"{requested}: the running version needs no lookup"
    assert running(rds_api, "rds-auto")["EngineVersion"] == "16.13"


def test_explicit_minor_is_a_minimum_never_a_downgrade(tmp_path, rds_api):
    run = provision(tmp_path, rds_api, "rds-minor", aws_rds_engine_version="16.11")
    assert run.returncode == 0, run.failure
    assert rds_api.actions("DescribeDBEngineVersions") == [], "an explicit minor needs no lookup"
    assert rds_api.actions("CreateDBInstance", "rds-minor")[0]["EngineVersion"] == "16.11"
    aws_upgrades(rds_api, "rds-minor", EngineVersion="16.13")

    run = provision(tmp_path, rds_api, "rds-minor", aws_rds_engine_version="16.12")
    assert run.returncode == 0, run.failure
    assert rds_api.actions("ModifyDBInstance") == [], "16.12 asked of a 16.13 instance: no downgrade"

    run = provision(tmp_path, rds_api, "rds-minor", aws_rds_engine_version="16.14", aws_rds_apply_immediately=True)
    assert run.returncode == 0, run.failure
    [modify] = rds_api.actions("ModifyDBInstance", "rds-minor")
    assert modify["EngineVersion"] == "16.14" and "AllowMajorVersionUpgrade" not in modify
    assert running(rds_api, "rds-minor")["EngineVersion"] == "16.14"


def test_major_upgrade_happens_only_with_the_deliberate_variable(tmp_path, rds_api):
    assert provision(tmp_path, rds_api, "rds-up", aws_rds_engine_version="16.11").returncode == 0

    run = provision(tmp_path, rds_api, "rds-up", aws_rds_engine_version="17")
    assert run.returncode != 0
    assert "set aws_rds_allow_major_version_upgrade=true" in run.failure, run.failure
    assert rds_api.actions("ModifyDBInstance") == []

    run = provision(tmp_path, rds_api, "rds-up", aws_rds_engine_version="17",
                    aws_rds_allow_major_version_upgrade=True, aws_rds_apply_immediately=True)
    assert run.returncode == 0, run.failure
    assert [c["EngineVersion"] for c in rds_api.actions("DescribeDBEngineVersions")] == ["17"]
    [modify] = rds_api.actions("ModifyDBInstance", "rds-up")
    assert modify["EngineVersion"] == FAKE_DEFAULTS["17"] and modify["AllowMajorVersionUpgrade"] == "true"

    # The variable stays on in the inventory: the next run sends nothing.
    run = provision(tmp_path, rds_api, "rds-up", aws_rds_engine_version="17", aws_rds_allow_major_version_upgrade=True)
    assert run.returncode == 0, run.failure
    assert run.task(ROLE_TASK)["changed"] is False
    assert rds_api.actions("ModifyDBInstance") == []


def test_a_major_rds_does_not_offer_stops_before_create(tmp_path, rds_api):
    run = provision(tmp_path, rds_api, "rds-none", aws_rds_engine_version="99")
    assert run.returncode != 0
    assert "aws_rds_engine_version 99: RDS reports no default postgres 99 version" in run.failure, run.failure
    assert rds_api.actions("CreateDBInstance") == []


PRODUCTION = {
    "aws_rds_multi_az": True,
    "aws_rds_preferred_backup_window": "03:00-04:00",
    "aws_rds_preferred_maintenance_window": "Sun:04:30-Sun:05:30",
    "aws_rds_max_allocated_storage": 100,
}


def test_production_options_are_idempotent_and_autoscaled_storage_is_not_shrunk(tmp_path, rds_api):
    run = provision(tmp_path, rds_api, "rds-prod", **PRODUCTION)
    assert run.returncode == 0, run.failure
    [create] = rds_api.actions("CreateDBInstance", "rds-prod")
    assert create["MultiAZ"] == "true" and create["MaxAllocatedStorage"] == "100"
    assert create["PreferredBackupWindow"] == "03:00-04:00"
    assert create["PreferredMaintenanceWindow"] == "sun:04:30-sun:05:30"

    run = provision(tmp_path, rds_api, "rds-prod", **PRODUCTION)
    assert run.returncode == 0, run.failure
    assert run.task(ROLE_TASK)["changed"] is False and rds_api.actions("ModifyDBInstance") == []

    aws_upgrades(rds_api, "rds-prod", AllocatedStorage=31)  # storage autoscaling grew it
    run = provision(tmp_path, rds_api, "rds-prod", **PRODUCTION)
    assert run.returncode == 0, run.failure
    assert run.task(ROLE_TASK)["changed"] is False, "the grown storage was sent back down"
    assert rds_api.actions("ModifyDBInstance") == []
    assert running(rds_api, "rds-prod")["AllocatedStorage"] == 31



@pytest.mark.parametrize(("skip", "snapshots"), [(True, 0), (False, 1)], ids=["skip-final-snapshot", "default"])
def test_destroy_takes_a_final_snapshot_unless_told_not_to(tmp_path, rds_api, skip, snapshots):
    identifier = f"rds-gone-{'skip' if skip else 'kept'}"
    tags = {"Project": "togglemaster", "Environment": identifier}  # only this test's database is doomed
    assert provision(tmp_path, rds_api, identifier, aws_rds_tags=tags).returncode == 0
    run = provision(tmp_path, rds_api, identifier, aws_rds_tags=tags, aws_rds_state="absent",
                    aws_rds_skip_final_snapshot=skip)
    assert run.returncode == 0, run.failure
    assert identifier not in {db["DBInstanceIdentifier"] for db in rds_api.rds.describe_db_instances()["DBInstances"]}
    kept = [s for s in rds_api.rds.describe_db_snapshots()["DBSnapshots"] if s["DBInstanceIdentifier"] == identifier]
    assert len(kept) == snapshots, kept
    if snapshots:
        assert kept[0]["DBSnapshotIdentifier"].startswith(f"{identifier}-final-")
