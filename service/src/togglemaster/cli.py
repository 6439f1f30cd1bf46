"""`togglemaster` admin commands: serve, migrate, init-db, check, version.

Exit codes (every command):
  0  success
  2  invalid or missing configuration (one line on stderr naming the variable)
  3  database unreachable (connection refused, timeout, authentication failed)
  4  migration failed (SQL error, or another migration held the lock too long)
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import psycopg

from togglemaster import config as config_mod
from togglemaster import migrate as migrate_mod
from togglemaster.config import Config, ConfigError
from togglemaster.version import BUILD_ID, VERSION

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_DB_UNREACHABLE = 3
EXIT_MIGRATION = 4


def _fail(code: int, message: str) -> int:
    print(f"togglemaster: {message}", file=sys.stderr)
    return code


def _unreachable(cfg: Config, exc: psycopg.Error) -> int:
    # The driver text can quote the host but never the password; keep only its first line.
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if cfg.db_password:
        detail = detail.replace(cfg.db_password, "***")
    return _fail(EXIT_DB_UNREACHABLE, f"database unreachable at {cfg.describe_db()}: {detail}")


def cmd_serve(cfg: Config) -> int:
    """Replace this process with gunicorn (same PID, so systemd's LISTEN_PID matches)."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:togglemaster.gunicorn_conf"]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
    return EXIT_OK  # not reached


def cmd_migrate(cfg: Config) -> int:
    try:
        result = migrate_mod.apply(cfg)
    except psycopg.OperationalError as exc:
        return _unreachable(cfg, exc)
    except migrate_mod.MigrationError as exc:
        return _fail(EXIT_MIGRATION, str(exc))
    if result.applied:
        print(f"applied {len(result.applied)} migration(s): {', '.join(result.applied)}")
    else:
        print(f"database schema is up to date ({result.total} migrations)")
    return EXIT_OK


def cmd_check(cfg: Config) -> int:
    try:
        with psycopg.connect(cfg.conninfo()) as conn:
            server = conn.info.server_version
        todo = migrate_mod.pending(cfg)
    except psycopg.OperationalError as exc:
        return _unreachable(cfg, exc)
    major, minor = divmod(server, 10000)
    state = f"{len(todo)} migration(s) pending" if todo else "schema up to date"
    print(f"ok: configuration valid; database {cfg.describe_db()} answers (PostgreSQL {major}.{minor}); {state}")
    return EXIT_OK


COMMANDS: dict[str, tuple[Callable[[Config], int], str]] = {
    "serve": (cmd_serve, "run the HTTP service under gunicorn"),
    "migrate": (cmd_migrate, "apply pending database migrations"),
    "init-db": (cmd_migrate, "same as migrate (name kept from the original service)"),
    "check": (cmd_check, "validate configuration and database reachability"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="togglemaster",
        description="ToggleMaster feature-flag service. Configuration comes from the environment.",
        epilog="exit codes: 0 ok, 2 invalid configuration, 3 database unreachable, 4 migration failed",
    )
    parser.add_argument("--version", action="version", version=f"togglemaster {VERSION} (build {BUILD_ID})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    sub.add_parser("version", help="print the version and build id")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"{VERSION} {BUILD_ID}")
        return EXIT_OK
    try:
        cfg = config_mod.load()
    except ConfigError as exc:
        return _fail(EXIT_CONFIG, f"invalid configuration: {exc}")
    handler, _ = COMMANDS[args.command]
    return handler(cfg)


if __name__ == "__main__":
    sys.exit(main())
