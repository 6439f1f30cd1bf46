"""Decisions of the aws_rds role that need no API call: which engine version and storage size to
send, and whether the backup and maintenance windows are ones RDS accepts.

Project-wide filters (ansible.cfg: filter_plugins = plugins/filter). The role looks the instance
(and, when needed, RDS's default minor version) up; these functions only decide, so they are
unit-tested without an AWS endpoint (tests/test_rds_version.py).
"""

from __future__ import annotations

import re

VERSION = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?$")
BACKUP_WINDOW = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")
MAINTENANCE_WINDOW = re.compile(
    r"^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])"
    r"-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])$",
    re.IGNORECASE,
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 24 * 60
WEEK = 7 * DAY


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(version).split("."))


def rds_version_valid(value: object) -> bool:
    """True for a major ("16", or 16 unquoted) or a major.minor given as a string ("16.11").
    A float is refused: YAML reads 16.10 unquoted as 16.1."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and VERSION.match(value) is not None


def rds_version_satisfies(running: str, requested: str) -> bool:
    """True when the running version is at least the requested one, compared numerically at the
    requested precision: "16" is satisfied by any 16.x (and by 17), "16.11" by 16.11 or higher."""
    if not running:
        return False
    wanted = _numbers(requested)
    return _numbers(running)[: len(wanted)] >= wanted


def rds_running_version(instances: list[dict]) -> str:
    """The version the instance runs, or will run once a pending modification applies ('' when
    there is no instance). instances is rds_instance_info's list (snake_case keys)."""
    if not instances:
        return ""
    instance = instances[0]
    pending = (instance.get("pending_modified_values") or {}).get("engine_version")
    return str(pending or instance.get("engine_version") or "")


def rds_version_plan(requested: str, instances: list[dict], defaults: list[dict] | None = None) -> dict:
    """Decide the engine version to send for aws_rds_engine_version.

    - An existing instance that already runs the requested version or higher keeps its own
      version: no downgrade, and AWS's automatic minor upgrades are never reported as changes.
    - Otherwise an explicit major.minor is sent as it is, and a bare major needs RDS's default
      minor for it (lookup=True); defaults is rds_engine_versions_info's db_engine_versions.

    Returns running, version ('' while the lookup is pending or found nothing), lookup, and
    major_upgrade (the version sent has a higher major than the one running).
    """
    running = rds_running_version(instances)
    lookup = False
    if rds_version_satisfies(running, requested):
        version = running
    elif "." in requested:
        version = requested
    else:
        lookup = True
        found = [str(item.get("engine_version", "")) for item in (defaults or [])]
        found = [item for item in found if VERSION.match(item) and _numbers(item)[0] == _numbers(requested)[0]]
        version = found[0] if found else ""
    major_upgrade = bool(running and version) and _numbers(version)[0] > _numbers(running)[0]
    return {"running": running, "version": version, "lookup": lookup, "major_upgrade": major_upgrade}


def rds_allocated_storage(requested: int, instances: list[dict]) -> int:
    """The storage to send: the requested GiB, or the instance's own when it already has more
    (storage autoscaling grew it, or someone did by hand). RDS never shrinks storage."""
    current = 0
    if instances:
        instance = instances[0]
        pending = (instance.get("pending_modified_values") or {}).get("allocated_storage")
        current = int(pending or instance.get("allocated_storage") or 0)
    return max(int(requested), current)


def _backup_minutes(window: str) -> tuple[int, int]:
    """Start and length in minutes of a daily hh24:mi-hh24:mi window (it may cross midnight)."""
    h1, m1, h2, m2 = (int(x) for x in BACKUP_WINDOW.match(window).groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    return start, (end - start) % DAY


def _maintenance_minutes(window: str) -> tuple[int, int]:
    """Start (minutes into the week from Monday 00:00) and length of a ddd:hh24:mi-ddd:hh24:mi window."""
    d1, h1, m1, d2, h2, m2 = MAINTENANCE_WINDOW.match(window).groups()
    start = DAYS.index(d1.lower()) * DAY + int(h1) * 60 + int(m1)
    end = DAYS.index(d2.lower()) * DAY + int(h2) * 60 + int(m2)
    return start, (end - start) % WEEK


def rds_backup_window_error(value: object) -> str:
    """'' when value is a daily backup window RDS accepts (hh24:mi-hh24:mi UTC, at least 30
    minutes), else a short reason."""
    if not isinstance(value, str) or not BACKUP_WINDOW.match(value):
        return f"{value!r} is not hh24:mi-hh24:mi (UTC), for example 03:00-04:00"
    if _backup_minutes(value)[1] < 30:
        return f"{value!r} is shorter than 30 minutes"
    return ""


def rds_maintenance_window_error(value: object) -> str:
    """'' when value is a weekly maintenance window RDS accepts (ddd:hh24:mi-ddd:hh24:mi UTC,
    30 minutes to 24 hours), else a short reason."""
    if not isinstance(value, str) or not MAINTENANCE_WINDOW.match(value):
        return f"{value!r} is not ddd:hh24:mi-ddd:hh24:mi (UTC, days mon-sun), for example sun:04:30-sun:05:30"
    length = _maintenance_minutes(value)[1]
    if length < 30:
        return f"{value!r} is shorter than 30 minutes"
    if length > DAY:
        return f"{value!r} is longer than 24 hours"
    return ""


def rds_windows_overlap(backup: str, maintenance: str) -> bool:
    """True when the daily backup window meets the weekly maintenance window on any day.

    Windows that only touch (one ends when the other starts) count as overlapping: the emulator
    refuses them with AWS's message, and a gap costs nothing.
    """
    if rds_backup_window_error(backup) or rds_maintenance_window_error(maintenance):
        return False
    b_start, b_len = _backup_minutes(backup)
    m_start, m_len = _maintenance_minutes(maintenance)
    for day in range(7):
        start = day * DAY + b_start
        # Compare on the week's circle: does either window start inside the other (ends included)?
        if (start - m_start) % WEEK <= m_len or (m_start - start) % WEEK <= b_len:
            return True
    return False


class FilterModule:
    """Filters: rds_version_valid, rds_version_satisfies, rds_running_version, rds_version_plan,
    rds_allocated_storage, rds_backup_window_error, rds_maintenance_window_error, rds_windows_overlap."""

    def filters(self) -> dict:
        return {
            "rds_version_valid": rds_version_valid,
            "rds_version_satisfies": rds_version_satisfies,
            "rds_running_version": rds_running_version,
            "rds_version_plan": rds_version_plan,
            "rds_allocated_storage": rds_allocated_storage,
            "rds_backup_window_error": rds_backup_window_error,
            "rds_maintenance_window_error": rds_maintenance_window_error,
            "rds_windows_overlap": rds_windows_overlap,
        }
