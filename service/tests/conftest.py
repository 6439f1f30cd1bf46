"""Fixtures: a real PostgreSQL (started here unless TEST_DATABASE_URL is given), a migrated
database, the app behind Flask's test client, and helpers to run the CLI and the server."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import pgserver  # noqa: E402

from togglemaster import config as config_mod  # noqa: E402
from togglemaster.app import create_app  # noqa: E402
from support import PREVIOUS_TOKEN, TOKEN, env_for, run_cli, url_for_params, wait_http, Service  # noqa: E402

SERVICE_DIR = Path(__file__).resolve().parents[1]
BUILD_ID = "ci-4242"


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


@pytest.fixture(scope="session")
def rotating_app(db_url: str):
    """Mid-rotation: the new token and the previous one both configured."""
    return _app(db_url, API_TOKEN=TOKEN, API_TOKEN_PREVIOUS=PREVIOUS_TOKEN)


@pytest.fixture(scope="session")
def unreachable_app():
    """The app configured for a database that refuses every connection."""
    return _app("postgresql://u:pw@127.0.0.1:1/db", DB_CONNECT_TIMEOUT="1")


@pytest.fixture
def unreachable(unreachable_app):
    return unreachable_app.test_client()


@dataclass(frozen=True)
class Release:
    """The service wheel built with TOGGLEMASTER_BUILD_ID=build, installed into site_dir."""

    wheel: Path
    site_dir: Path
    version: str
    build: str

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """env with this release first on the import path (ahead of the editable checkout)."""
        return dict(env, PYTHONPATH=str(self.site_dir))

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "togglemaster.cli", *args]


def _build_release(out: Path, build_id: str | None) -> Release:
    """Build the wheel the way a release does (build_id None: the variable unset), install it."""
    env = {k: v for k, v in os.environ.items() if k != "TOGGLEMASTER_BUILD_ID"}
    if build_id is not None:
        env["TOGGLEMASTER_BUILD_ID"] = build_id
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(out / "dist"), str(SERVICE_DIR)],
                   env=env, check=True, capture_output=True, timeout=300)
    wheel = next((out / "dist").glob("togglemaster-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(out / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return Release(wheel=wheel, site_dir=out / "site", version=wheel.name.split("-")[1], build=build_id or "dev")


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Release:
    """The wheel built with TOGGLEMASTER_BUILD_ID=ci-4242, installed."""
    return _build_release(tmp_path_factory.mktemp("release"), BUILD_ID)


@pytest.fixture(scope="session")
def release_without_build_id(tmp_path_factory) -> Release:
    return _build_release(tmp_path_factory.mktemp("release-dev"), None)


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
def rotating(rotating_app, clean):
    return rotating_app.test_client()


@pytest.fixture
def serve(tmp_path):
    """Factory: start `togglemaster serve` on a free loopback port; stopped at teardown."""
    started: list[Service] = []

    def start(db: str, release: Release | None = None, **env: str) -> tuple[Service, str]:
        """release: serve that installed wheel instead of the checkout."""
        port = pgserver.free_port()
        values = dict(HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="2")
        values.update(env)
        full_env = env_for(db, **values)
        log_path = tmp_path / f"serve-{port}.log"
        if release is None:
            service = Service(full_env, log_path)
        else:
            service = Service(release.env(full_env), log_path, argv=release.argv("serve"))
        started.append(service)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        return service, base

    yield start
    for service in started:
        service.stop()
