"""SQL and the connection pool. Nothing HTTP lives here.

Failures reach callers as the exceptions below; the API layer turns them into JSON.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the pool keeps retrying to open a connection in the background: not at all (one
# immediate retry, then it gives up and trips the breaker). While the database is down the
# breaker's probe does the retrying, so the pool never sits in a backoff sleep that would
# delay recovery; once the breaker closes, the next request makes the pool connect at once.
RECONNECT_TIMEOUT = 0.0

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


class Breaker:
    """Whether the database is known to be down, and the one probe that sees it come back.

    A failed connection attempt trips it (a request's own check, or the pool giving up on
    reconnecting). While it is tripped, requests fail at once instead of each queueing for
    a connection until the pool timeout. A daemon thread, started when it trips (so always
    after gunicorn forks the worker), calls `reachable` every `interval` seconds; when that
    succeeds it calls `recovered`, closes the breaker and ends.
    """

    def __init__(
        self, reachable: Callable[[], bool], recovered: Callable[[], None], interval: float
    ) -> None:
        self._reachable = reachable
        self._recovered = recovered
        self._interval = interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._stopped = threading.Event()

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def trip(self, reason: str) -> None:
        with self._lock:
            if self._down_since is not None or self._stopped.is_set():
                return
            self._down_since = time.monotonic()
        log.warning("database unavailable (%s): failing fast until it answers again", reason)
        threading.Thread(target=self._probe, name="togglemaster-db-probe", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _probe(self) -> None:
        while not self._stopped.wait(self._interval):
            if self._reachable():
                try:
                    self._recovered()
                except Exception as exc:  # never leave the breaker tripped for good
                    log.warning("could not renew the pool's connections: %s", type(exc).__name__)
                self._close()
                return

    def _close(self) -> None:
        with self._lock:
            started, self._down_since = self._down_since, None
        if started is not None:
            log.info("database reachable again after %.1f s", time.monotonic() - started)


class Store:
    """Flag persistence over a psycopg_pool connection pool (never one connection per request)."""

    def __init__(self, conninfo: str, pool_size: int, timeout: float, probe_interval: float) -> None:
        self._conninfo = conninfo
        # Connections that predate the outage are dropped (without a round trip, which could
        # hang on a vanished host) and replaced in the background when the database is back.
        self._breaker = Breaker(self._answers, lambda: self._pool.drain(), probe_interval)
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            reconnect_failed=lambda _pool: self._breaker.trip("the pool could not connect"),
            kwargs={"autocommit": True},
            open=False,
            name="togglemaster",
        )
        self._max_attempts = pool_size + 1

    def open(self) -> None:
        """Start the pool without waiting: the service starts even if the database is down."""
        self._pool.open(wait=False)

    def close(self) -> None:
        self._breaker.stop()
        self._pool.close(timeout=2.0)

    def _answers(self) -> bool:
        """Whether a fresh connection to the database (outside the pool) answers."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run work on a pooled connection.

        While the breaker says the database is down, fail at once. A connection that broke
        while idle in the pool (database restarted, or gone) fails fast; if a fresh
        connection answers, it is discarded and the work retried on another one, so clients
        do not see an outage that is over; if none does, the breaker trips. Anything else
        that means "no database" becomes DatabaseUnavailable.
        """
        for _ in range(self._max_attempts):
            if self._breaker.down:
                raise DatabaseUnavailable("the database is down")
            try:
                with self._pool.connection() as conn:
                    try:
                        return work(conn)
                    except (psycopg.OperationalError, psycopg.InterfaceError):
                        if conn.broken or conn.closed:
                            raise _StaleConnection() from None
                        raise
            except _StaleConnection:
                log.warning("discarded a broken database connection")
                if not self._breaker.down and not self._answers():
                    self._breaker.trip("a connection broke and a new one fails")
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
