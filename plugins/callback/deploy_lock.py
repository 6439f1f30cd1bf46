"""Release the environment's deploy lock and record the run when the run ends, success or failure.

The deploy_lock role takes the lock and leaves the fact ``deploy_lock_held`` on the control host:
the lock and record parameter names, this run's entry (who, what, since when, its run id) and how
to reach AWS. Ansible has no "finally" across plays (a failed play ends the playbook), so this
callback does the release: when the run's statistics come in, it appends the entry with the
result to the record parameter, then deletes the lock if it still holds this run's id.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: deploy_lock
type: aggregate
short_description: Releases the environment's deploy lock and records the run, on success and failure
description:
  - When the run ends, for every host holding the fact C(deploy_lock_held) (set by the deploy_lock
    role), appends the run's entry and result to the record parameter and deletes the lock
    parameter if it is still this run's.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
  - boto3
"""

# A standard SSM parameter holds at most 4 KB: the oldest runs make room for the newest.
RECORD_LIMIT = 4096


def ssm_client(connection: dict[str, Any]) -> Any:
    """A boto3 SSM client from the amazon.aws connection options (region, endpoint_url, keys)."""
    import boto3  # imported late: the callback loads in every run, AWS or not

    session = boto3.Session(profile_name=connection.get("profile") or None)
    kwargs = {
        "region_name": connection.get("region"),
        "endpoint_url": connection.get("endpoint_url"),
        "aws_access_key_id": connection.get("access_key"),
        "aws_secret_access_key": connection.get("secret_key"),
        "aws_session_token": connection.get("session_token"),
    }
    return session.client("ssm", **{key: value for key, value in kwargs.items() if value})


def read_json(client: Any, name: str) -> Any:
    """The parameter's JSON value, or None when it does not exist."""
    try:
        return json.loads(client.get_parameter(Name=name)["Parameter"]["Value"])
    except client.exceptions.ParameterNotFound:
        return None


def append_record(client: Any, name: str, entry: dict[str, Any]) -> None:
    """Append entry to the JSON list in parameter name, dropping the oldest runs to fit."""
    runs = read_json(client, name) or []
    runs.append(entry)
    while len(runs) > 1 and len(json.dumps(runs, sort_keys=True)) > RECORD_LIMIT:
        runs.pop(0)
    client.put_parameter(Name=name, Value=json.dumps(runs, sort_keys=True), Type="String", Overwrite=True)


def release(held: dict[str, Any], result: str, failed_hosts: list[str]) -> str:
    """Record the run and delete the lock if it is still this run's; a line saying what was done."""
    client = ssm_client(held.get("connection") or {})
    entry = dict(held["entry"])
    if held.get("record_parameter"):
        finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        append_record(client, held["record_parameter"], {**entry, "result": result, "finished": finished,
                                                         "failed_hosts": failed_hosts})
    lock = read_json(client, held["parameter"])
    if lock and lock.get("run_id") == entry["run_id"]:
        client.delete_parameter(Name=held["parameter"])
        return f"deploy lock {held['parameter']} released ({entry['action']} {result})"
    return f"deploy lock {held['parameter']} was no longer this run's: left as it is ({entry['action']} {result})"


class CallbackModule(CallbackBase):
    """Releases the lock and records the run when the playbook's statistics arrive."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "deploy_lock"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._play: Any = None

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._play = play

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self._play is None:
            return
        # set_fact results live in the variable manager's per-host facts of this run.
        facts_by_host = self._play.get_variable_manager()._nonpersistent_fact_cache
        failed_hosts = sorted(host for counts in (stats.failures, stats.dark) for host, count in counts.items() if count)
        result = "failed" if failed_hosts else "succeeded"
        for host in sorted(facts_by_host):
            held = facts_by_host[host].get("deploy_lock_held")
            if not held:
                continue
            try:
                self._display.display(release(held, result, failed_hosts))
            except Exception as error:  # noqa: BLE001 - the run is over; say what is left behind
                self._display.warning(f"deploy lock {held.get('parameter')} could not be released: {error}. "
                                      "Break it when it is stale with -e break_lock=<env_name>.")
