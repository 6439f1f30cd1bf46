"""Schema migrations with yoyo-migrations (versioned SQL files in togglemaster/migrations).

yoyo records applied migrations in the database (`_yoyo_migration`) and takes its own lock
row (`yoyo_lock`). Two hosts starting `togglemaster migrate` at the same moment are first
serialized by a PostgreSQL advisory lock held for the whole run, so yoyo's bookkeeping
tables are never created concurrently either; the second host then finds nothing to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg
from yoyo import get_backend, read_migrations

from togglemaster.config import Config

# Arbitrary, fixed key for pg_advisory_lock: "togglemaster migrate".
ADVISORY_LOCK_KEY = 0x746D6D6967  # 'tmmig'


class MigrationError(Exception):
    """Migrations could not be applied; str() is one line without secrets."""


@dataclass(frozen=True)
class MigrationResult:
    applied: tuple[str, ...]
    total: int


def _migrations():
    directory = resources.files("togglemaster").joinpath("migrations")
    return read_migrations(str(directory))


def pending(cfg: Config) -> list[str]:
    backend = get_backend(cfg.migration_url())
    try:
        return [m.id for m in backend.to_apply(_migrations())]
    finally:
        backend.connection.close()


def apply(cfg: Config) -> MigrationResult:
    """Apply every pending migration; safe to run twice and from two hosts at once.

    psycopg.OperationalError (database unreachable) propagates to the caller.
    """
    with psycopg.connect(cfg.conninfo(), autocommit=True) as guard:
        # An int from the validated Config (1-3600): safe to format into the statement.
        wait = cfg.migration_lock_timeout
        guard.execute(f"SET lock_timeout = '{wait}s'")
        try:
            guard.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            raise MigrationError(
                f"another migration held the lock for more than {wait} s"
            ) from None
        try:
            return _apply_locked(cfg)
        finally:
            guard.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _apply_locked(cfg: Config) -> MigrationResult:
    backend = get_backend(cfg.migration_url())
    try:
        migrations = _migrations()
        with backend.lock():
            todo = backend.to_apply(migrations)
            ids = tuple(m.id for m in todo)
            try:
                backend.apply_migrations(todo)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration failed ({type(exc).__name__}): {exc.diag.message_primary or ''}"
                ) from None
        return MigrationResult(applied=ids, total=len(migrations))
    finally:
        backend.connection.close()
