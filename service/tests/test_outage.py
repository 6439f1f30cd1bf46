"""Database down: data routes answer 503 quickly, /health stays 200, and the service
recovers by itself when the database returns, with no restart."""
from __future__ import annotations

import time

import pytest
import requests

import pgserver
from support import TOKEN, env_for, run_cli

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONNECT_TIMEOUT = 1
RECOVERY_BUDGET = 12.0
LEAKS = ("psycopg", "Traceback", "connection", "127.0.0.1", "SELECT", "port", "password")


@pytest.fixture
def own_pg():
    """A PostgreSQL of this test's own, since the test stops it. Durable, because an
    immediate stop is a crash: a fast-and-loose cluster would lose the last commits."""
    if pgserver.pg_bin() is None:
        pytest.skip("needs local PostgreSQL server binaries to stop and start a database")
    server = pgserver.PgServer(durable=True)
    server.start()
    yield server
    server.destroy()


def timed(call):
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def answers_in_a_row(url: str, count: int) -> list[int]:
    """Poll url until it answers 200 count times in a row (or the recovery budget runs out).

    Returns every status seen; the caller asserts on the tail, so a failure shows the history.
    """
    start = time.monotonic()
    statuses: list[int] = []
    while statuses[-count:] != [200] * count and time.monotonic() - start < RECOVERY_BUDGET:
        statuses.append(requests.get(url, timeout=30).status_code)
        time.sleep(0.05)
    return statuses


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
            assert not any(leak in resp.text for leak in LEAKS)
            assert took < CONNECT_TIMEOUT + 1.5, (name, took)

    health, took = timed(lambda: requests.get(base + "/health", timeout=5))
    assert health.status_code == 200 and took < 0.5
    ready, took = timed(lambda: requests.get(base + "/ready", timeout=30))
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable"}
    assert took < CONNECT_TIMEOUT + 1.5

    own_pg.start()

    # Every worker reconnects on its own within a few seconds: 20 answers in a row succeed.
    statuses = answers_in_a_row(base + "/flags/sturdy", 20)
    assert statuses[-20:] == [200] * 20, statuses
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
    statuses = answers_in_a_row(base + "/ready", 10)
    assert statuses[-10:] == [200] * 10, statuses
    assert requests.get(base + "/flags", timeout=5).json() == []
