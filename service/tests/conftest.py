"""Fixtures: a real PostgreSQL (started here unless TEST_DATABASE_URL is given), a migrated
database, the app behind Flask's test client, and helpers to run the CLI and the server."""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import pgserver  # noqa: E402

from togglemaster import config as config_mod  # noqa: E402
from togglemaster.app import create_app  # noqa: E402
from support import TOKEN, env_for, run_cli, url_for_params, wait_http, Service  # noqa: E402


@pytest.fixture(scope="session")
def pg() -> Iterator[str]:
    """Admin URL of a PostgreSQL server (a database named in it is never dropped)."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = pgserver.PgServer()
    server.start()
    try:
        yield server.url()
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def make_database(pg: str):
    """Factory: a fresh, empty database on the test server; returns its URL."""
    created: list[str] = []
    admin = psycopg.conninfo.conninfo_to_dict(pg)

    def make() -> str:
        name = f"tm_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        params = dict(admin, dbname=name)
        return url_for_params(params)

    yield make
    with psycopg.connect(pg, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_url(make_database) -> str:
    """A database migrated with `togglemaster migrate`, shared by the HTTP tests."""
    url = make_database()
    result = run_cli("migrate", env=env_for(url))
    assert result.returncode == 0, result.stderr
    return url


def _app(db_url: str, **env: str):
    cfg = config_mod.load({"DATABASE_URL": db_url, "DB_POOL_SIZE": "4", "DB_CONNECT_TIMEOUT": "2", **env})
    app = create_app(cfg)
    app.testing = True
    return app


@pytest.fixture(scope="session")
def open_app(db_url: str):
    return _app(db_url)


@pytest.fixture(scope="session")
def guarded_app(db_url: str):
    return _app(db_url, API_TOKEN=TOKEN)


@pytest.fixture
def clean(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE flags RESTART IDENTITY")


@pytest.fixture
def client(open_app, clean):
    return open_app.test_client()


@pytest.fixture
def guarded(guarded_app, clean):
    return guarded_app.test_client()


@pytest.fixture
def serve(tmp_path):
    """Factory: start `togglemaster serve` on a free loopback port; stopped at teardown."""
    started: list[Service] = []

    def start(db: str, **env: str) -> tuple[Service, str]:
        port = pgserver.free_port()
        values = dict(HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="2")
        values.update(env)
        service = Service(env_for(db, **values), tmp_path / f"serve-{port}.log")
        started.append(service)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        return service, base

    yield start
    for service in started:
        service.stop()
