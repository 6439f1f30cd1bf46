"""Database down: data routes answer 503 at once, /health stays 200 and fast, the service
recovers by itself when the database returns, with no restart, and no acknowledged write is
lost."""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

import psycopg
import pytest
import requests

import pgserver
from support import TOKEN, env_for, run_cli

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONNECT_TIMEOUT = 1
RECOVERY_BUDGET = 12.0
# The fail-fast tests set the connection (and pool) timeout far above their bounds: a
# request that queued for a pooled connection instead of failing fast would take 20 s.
SLOW_TIMEOUT = 20
CLIENTS = 30
# s: an answer that waited for nothing (milliseconds; 30 clients answered in about 0.1 s),
# with room for a loaded machine, and a quarter of what a request that waited would take.
QUICK = SLOW_TIMEOUT / 4
# s from the database accepting connections to the service answering: about one probe
# interval (0.5 s); ten of them leave room for a loaded machine.
RECOVERED_BUDGET = 5.0
RETRY_AFTER = "1"  # the default probe interval, 0.5 s, rounded up to whole seconds
LEAKS = ("psycopg", "Traceback", "connection", "127.0.0.1", "SELECT", "port", "password")


@pytest.fixture
def own_pg():
    """A PostgreSQL of this test's own, since the test stops it. Durable, because an
    immediate stop is a crash: a fast-and-loose cluster would lose the last commits.

    Without server binaries: with TEST_DATABASE_URL set (CI, or a machine set up to run the
    whole suite) that is a broken setup and the tests fail; without it (a laptop that has
    neither) they are skipped, and the other tests stop at the missing server anyway."""
    if pgserver.pg_bin() is None:
        if os.environ.get("TEST_DATABASE_URL"):
            pytest.fail(
                "the outage tests need PostgreSQL server binaries (pg_ctl, initdb) to stop and start"
                " a server of their own; TEST_DATABASE_URL cannot stand in for them. Install the"
                " PostgreSQL server package or set PG_BIN",
                pytrace=False,
            )
        pytest.skip("no PostgreSQL server binaries and no TEST_DATABASE_URL: nothing to stop and start")
    server = pgserver.PgServer(durable=True)
    server.start()
    yield server
    server.destroy()


def start_service(own_pg, serve, **env: str) -> str:
    url = own_pg.url()
    assert run_cli("migrate", env=env_for(url)).returncode == 0
    _, base = serve(url, API_TOKEN=TOKEN, **env)
    return base


def timed(call):
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def recovered_after(url: str, streak: int) -> tuple[float | None, list[int]]:
    """Poll url until it answers 200 streak times in a row; return when that streak began
    (seconds from the call) and every status seen; None when RECOVERY_BUDGET ran out."""
    start = time.monotonic()
    statuses: list[int] = []
    began: float | None = None
    while time.monotonic() - start < RECOVERY_BUDGET:
        asked = time.monotonic() - start
        statuses.append(requests.get(url, timeout=SLOW_TIMEOUT + 5).status_code)
        if statuses[-1] != 200:
            began = None
        elif began is None:
            began = asked
        if statuses[-streak:] == [200] * streak:
            return began, statuses
        time.sleep(0.02)
    return None, statuses


def stored_flags(url: str) -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, is_enabled FROM flags").fetchall())


def requests_during_outage(base: str) -> list[Callable[[int], requests.Response]]:
    """One call per route that needs the database; a client numbered i makes call i % 5."""
    timeout = SLOW_TIMEOUT + 5
    return [
        lambda i: requests.get(base + "/flags/sturdy", timeout=timeout),
        lambda i: requests.get(base + "/flags", timeout=timeout),
        lambda i: requests.post(base + "/flags", json={"name": f"during-{i}"}, headers=AUTH, timeout=timeout),
        lambda i: requests.put(base + "/flags/sturdy", json={"is_enabled": False}, headers=AUTH, timeout=timeout),
        lambda i: requests.delete(base + "/flags/sturdy", headers=AUTH, timeout=timeout),
    ]


class LoopingClients:
    """Threads that each repeat one call until stopped, recording every answer."""

    def __init__(self, calls: list[Callable[[int], requests.Response]], count: int) -> None:
        self.answers: list[tuple[int, requests.Response | Exception, float]] = []
        self._first = [threading.Event() for _ in range(count)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._repeat, args=(i, calls[i % len(calls)])) for i in range(count)
        ]

    def __enter__(self) -> "LoopingClients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def all_answered_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        return all(first.wait(max(0.0, deadline - time.monotonic())) for first in self._first)

    def _repeat(self, i: int, call: Callable[[int], requests.Response]) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                answer: requests.Response | Exception = call(i)
            except requests.RequestException as exc:
                answer = exc
            with self._lock:
                self.answers.append((i, answer, time.monotonic() - began))
            self._first[i].set()


def test_database_outage_degrades_to_503_and_recovers_without_restart(own_pg, serve):
    url = own_pg.url()
    assert run_cli("migrate", env=env_for(url)).returncode == 0
    service, base = serve(url, API_TOKEN=TOKEN, DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
    assert requests.post(base + "/flags", json={"name": "sturdy"}, headers=AUTH, timeout=5).status_code == 201
    for _ in range(20):  # warm every worker's pool so idle connections go stale in the outage
        assert requests.get(base + "/flags/sturdy", timeout=5).status_code == 200
    pid = service.proc.pid

    own_pg.stop("immediate")

    calls = {
        "get": lambda: requests.get(base + "/flags/sturdy", timeout=30),
        "list": lambda: requests.get(base + "/flags", timeout=30),
        "post": lambda: requests.post(base + "/flags", json={"name": "new"}, headers=AUTH, timeout=30),
        "put": lambda: requests.put(base + "/flags/sturdy", json={"is_enabled": True}, headers=AUTH, timeout=30),
        "delete": lambda: requests.delete(base + "/flags/sturdy", headers=AUTH, timeout=30),
    }
    for name, call in calls.items():
        for _ in range(2):
            resp, took = timed(call)
            assert resp.status_code == 503, (name, resp.status_code, resp.text)
            assert resp.json() == {"error": "Banco de dados indisponível"}
            assert resp.headers.get("Retry-After") == RETRY_AFTER, (name, resp.headers)
            assert not any(leak in resp.text for leak in LEAKS)
            # At most the connection timeout, not the 30 s a hanging connection would take.
            assert took < CONNECT_TIMEOUT + QUICK, (name, took)

    health = requests.get(base + "/health", timeout=5)  # never touches the database
    assert health.status_code == 200
    ready, took = timed(lambda: requests.get(base + "/ready", timeout=30))
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable"}
    assert took < CONNECT_TIMEOUT + QUICK

    own_pg.start()

    # Every worker reconnects on its own: 20 answers in a row succeed.
    began, statuses = recovered_after(base + "/flags/sturdy", streak=20)
    assert began is not None, statuses
    assert requests.get(base + "/ready", timeout=5).status_code == 200
    # From then on every request succeeds: stale pooled connections are discarded, not served.
    results = [requests.get(base + "/flags/sturdy", timeout=10).status_code for _ in range(40)]
    assert results == [200] * 40
    assert requests.put(base + "/flags/sturdy", json={"is_enabled": True}, headers=AUTH, timeout=10).status_code == 200
    assert service.proc.pid == pid and service.proc.poll() is None


def test_service_starts_while_the_database_is_down_and_becomes_ready(own_pg, serve):
    url = own_pg.url()
    assert run_cli("migrate", env=env_for(url)).returncode == 0
    own_pg.stop("fast")
    _, base = serve(url, DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
    assert requests.get(base + "/health", timeout=5).status_code == 200
    assert requests.get(base + "/ready", timeout=30).status_code == 503
    own_pg.start()
    # Every worker becomes ready on its own: 10 answers in a row say so.
    began, statuses = recovered_after(base + "/ready", streak=10)
    assert began is not None, statuses
    assert requests.get(base + "/flags", timeout=5).json() == []


def test_outage_answers_thirty_clients_503_at_once_and_health_stays_fast(own_pg, serve):
    base = start_service(own_pg, serve, DB_CONNECT_TIMEOUT=str(SLOW_TIMEOUT))
    assert requests.post(base + "/flags", json={"name": "sturdy"}, headers=AUTH, timeout=5).status_code == 201
    for _ in range(20):  # warm every worker's pool so idle connections go stale in the outage
        assert requests.get(base + "/flags/sturdy", timeout=5).status_code == 200

    own_pg.stop("immediate")

    with LoopingClients(requests_during_outage(base), CLIENTS) as clients:
        assert clients.all_answered_within(QUICK)
        # Asked while the 30 clients keep the workers busy: it queues behind their requests.
        health = [timed(lambda: requests.get(base + "/health", timeout=SLOW_TIMEOUT + 5)) for _ in range(5)]
        ready, ready_took = timed(lambda: requests.get(base + "/ready", timeout=SLOW_TIMEOUT + 5))

    for i, answer, took in clients.answers:
        assert isinstance(answer, requests.Response), (i, answer, took)
        assert answer.status_code == 503, (i, answer.status_code, answer.text)
        assert answer.json() == {"error": "Banco de dados indisponível"}
        assert answer.headers["Retry-After"] == RETRY_AFTER
        assert not any(leak in answer.text for leak in LEAKS)
    assert all(resp.status_code == 200 and resp.json()["status"] == "ok" for resp, _ in health)
    assert max(took for _, took in health) < QUICK, [took for _, took in health]
    assert ready.status_code == 503 and ready_took < QUICK, (ready.status_code, ready_took)


def test_service_recovers_within_seconds_and_keeps_every_acknowledged_write(own_pg, serve):
    base = start_service(own_pg, serve, DB_CONNECT_TIMEOUT=str(SLOW_TIMEOUT))
    acknowledged: dict[str, bool] = {}
    retry_after: list[str | None] = []

    def write(name: str, is_enabled: bool) -> int:
        resp = requests.post(
            base + "/flags", json={"name": name, "is_enabled": is_enabled}, headers=AUTH, timeout=SLOW_TIMEOUT + 5
        )
        if resp.status_code == 201:
            acknowledged[name] = is_enabled
        if resp.status_code == 503:
            retry_after.append(resp.headers.get("Retry-After"))
        return resp.status_code

    assert [write(f"before-{i}", i % 2 == 0) for i in range(10)] == [201] * 10
    switch = requests.put(base + "/flags/before-1", json={"is_enabled": True}, headers=AUTH, timeout=5)
    assert switch.status_code == 200
    acknowledged["before-1"] = True

    own_pg.stop("immediate")

    during = [timed(lambda i=i: write(f"during-{i}", True)) for i in range(10)]
    assert [status for status, _ in during] == [503] * 10, during
    assert max(took for _, took in during) < QUICK, during
    switch = requests.put(base + "/flags/before-0", json={"is_enabled": False}, headers=AUTH, timeout=SLOW_TIMEOUT + 5)
    assert switch.status_code == 503
    assert retry_after + [switch.headers.get("Retry-After")] == [RETRY_AFTER] * 11

    own_pg.start()

    began, statuses = recovered_after(base + "/flags/before-0", streak=10)
    assert began is not None and began < RECOVERED_BUDGET, (began, statuses)
    assert [write(f"after-{i}", True) for i in range(10)] == [201] * 10

    listed = {f["name"]: f["is_enabled"] for f in requests.get(base + "/flags", timeout=5).json()}
    assert listed == acknowledged
    assert stored_flags(own_pg.url()) == acknowledged
