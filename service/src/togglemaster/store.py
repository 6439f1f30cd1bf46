"""SQL and the connection pool. Nothing HTTP lives here.

Failures reach callers as the exceptions below; the API layer turns them into JSON.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the pool keeps retrying (1 s, then 2 s backoff) to open a connection in the
# background before it gives up that attempt; the next request starts a fresh one at once.
# Small, so that after an outage every worker reconnects within a couple of seconds instead
# of sleeping through psycopg_pool's default backoff of up to minutes.
RECONNECT_TIMEOUT = 3.0

_COLUMNS = "name, is_enabled, description, created_at, updated_at"


class StoreError(Exception):
    """Base class for failures the API shapes into a response."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached or answered within the timeout."""


class FlagExists(StoreError):
    """A flag with that name already exists."""


@dataclass(frozen=True)
class Flag:
    name: str
    is_enabled: bool
    description: str | None
    created_at: datetime | None
    updated_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "is_enabled": self.is_enabled,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _flag(row: tuple[Any, ...]) -> Flag:
    return Flag(*row)


class Store:
    """Flag persistence over a psycopg_pool connection pool (never one connection per request)."""

    def __init__(self, conninfo: str, pool_size: int, timeout: float) -> None:
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            open=False,
            name="togglemaster",
        )
        self._max_attempts = pool_size + 1

    def open(self) -> None:
        """Start the pool without waiting: the service starts even if the database is down."""
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close(timeout=2.0)

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run work on a pooled connection.

        A connection that broke while idle in the pool (database restarted) fails fast;
        it is discarded and the work is retried on another one, so clients do not see the
        outage once the database is back. Anything else that means "no database" becomes
        DatabaseUnavailable.
        """
        for _ in range(self._max_attempts):
            try:
                with self._pool.connection() as conn:
                    try:
                        return work(conn)
                    except (psycopg.OperationalError, psycopg.InterfaceError):
                        if conn.broken or conn.closed:
                            raise _StaleConnection() from None
                        raise
            except _StaleConnection:
                log.warning("discarded a broken database connection; retrying")
                continue
            except PoolTimeout:
                raise DatabaseUnavailable("no database connection within the timeout") from None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise DatabaseUnavailable(type(exc).__name__) from None
        raise DatabaseUnavailable("database connections keep failing")

    def ping(self) -> bool:
        try:
            self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        except DatabaseUnavailable:
            return False
        return True

    def list_flags(self, limit: int | None, offset: int) -> list[Flag]:
        def work(conn: psycopg.Connection[Any]) -> list[Flag]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM flags ORDER BY name LIMIT %s OFFSET %s",
                (limit, offset),
            ).fetchall()
            return [_flag(r) for r in rows]

        return self._run(work)

    def get_flag(self, name: str) -> Flag | None:
        def work(conn: psycopg.Connection[Any]) -> Flag | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM flags WHERE name = %s", (name,)).fetchone()
            return _flag(row) if row else None

        return self._run(work)

    def create_flag(self, name: str, is_enabled: bool, description: str | None) -> Flag:
        def work(conn: psycopg.Connection[Any]) -> Flag:
            row = conn.execute(
                "INSERT INTO flags (name, is_enabled, description) VALUES (%s, %s, %s)"
                f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
                (name, is_enabled, description),
            ).fetchone()
            if row is None:
                raise FlagExists(name)
            return _flag(row)

        return self._run(work)

    def update_flag(
        self, name: str, is_enabled: bool, description: str | None, set_description: bool
    ) -> Flag | None:
        def work(conn: psycopg.Connection[Any]) -> Flag | None:
            row = conn.execute(
                "UPDATE flags SET is_enabled = %s,"
                " description = CASE WHEN %s THEN %s ELSE description END,"
                f" updated_at = now() WHERE name = %s RETURNING {_COLUMNS}",
                (is_enabled, set_description, description, name),
            ).fetchone()
            return _flag(row) if row else None

        return self._run(work)

    def delete_flag(self, name: str) -> bool:
        def work(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute("DELETE FROM flags WHERE name = %s", (name,))
            return cur.rowcount > 0

        return self._run(work)


class _StaleConnection(Exception):
    pass
