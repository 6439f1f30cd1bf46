"""The admin processes through the console script: configuration errors, check, migrate."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from support import env_for, run_cli, togglemaster_exe

SERVICE_DIR = Path(__file__).resolve().parents[1]


def table_columns(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'flags'"
        ).fetchall()
    return {r[0] for r in rows}


# --- configuration ----------------------------------------------------------------------


def bare_env(**values: str) -> dict[str, str]:
    env = env_for("postgresql://u@127.0.0.1/db")
    del env["DATABASE_URL"]
    env.update(values)
    return env


@pytest.mark.parametrize(
    "env, fragment",
    [
        (bare_env(), "set DATABASE_URL or DB_HOST, DB_NAME and DB_USER"),
        (bare_env(DB_HOST="h", DB_USER="u"), "missing: DB_NAME"),
        (bare_env(DATABASE_URL="mysql://u@h/db"), "DATABASE_URL must start with postgresql://"),
        (bare_env(DATABASE_URL="postgresql://u@h/db?sslmode=sometimes"), "DB_SSLMODE must be one of"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_PORT="70000"), "DB_PORT must be an integer"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_SSLMODE="yes"), "DB_SSLMODE must be one of"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", PORT="http"), "PORT must be an integer"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", LOG_LEVEL="LOUD"), "LOG_LEVEL must be one of"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_POOL_SIZE="0"), "DB_POOL_SIZE must be"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", WEB_CONCURRENCY="many"), "WEB_CONCURRENCY must be"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_CONNECT_TIMEOUT="0"), "DB_CONNECT_TIMEOUT must be"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_PROBE_INTERVAL_MS="0.5"), "DB_PROBE_INTERVAL_MS must be"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", API_TOKEN="short"), "API_TOKEN"),
    ],
)
@pytest.mark.parametrize("command", ["check", "serve", "migrate"])
def test_invalid_configuration_exits_2_with_one_clear_line(env, fragment, command):
    result = run_cli(command, env=env, timeout=20)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_configuration_error_never_prints_the_password():
    env = bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", DB_PASSWORD="s3cr3t-pw-value", PORT="x")
    result = run_cli("check", env=env)
    assert result.returncode == 2
    assert "s3cr3t-pw-value" not in result.stderr + result.stdout


def test_check_on_unreachable_database_exits_3_without_the_password():
    env = env_for("postgresql://u:very-secret-pw@127.0.0.1:1/db")
    result = run_cli("check", env=env)
    assert result.returncode == 3
    assert "database unreachable" in result.stderr
    assert "very-secret-pw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_with_wrong_password_exits_3(db_url):
    bad = db_url.replace("test-password-not-secret", "wrong-password")
    if bad == db_url:
        pytest.skip("TEST_DATABASE_URL uses other credentials")
    result = run_cli("check", env=env_for(bad))
    assert result.returncode == 3
    assert "wrong-password" not in result.stderr


def test_check_ok_exits_0_and_reports_schema(db_url):
    result = run_cli("check", env=env_for(db_url))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")
    assert "schema up to date" in result.stdout


def test_check_accepts_db_variables(pg, make_database):
    url = make_database()
    info = psycopg.conninfo.conninfo_to_dict(url)
    env = bare_env(
        DB_HOST=str(info["host"]),
        DB_PORT=str(info["port"]),
        DB_NAME=str(info["dbname"]),
        DB_USER=str(info["user"]),
        DB_PASSWORD=str(info.get("password", "")),
        DB_SSLMODE="disable",
    )
    result = run_cli("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "migration(s) pending" in result.stdout


def test_migrate_on_unreachable_database_exits_3():
    result = run_cli("migrate", env=env_for("postgresql://u:pw@127.0.0.1:1/db"))
    assert result.returncode == 3


# --- migrations -------------------------------------------------------------------------


def test_migrate_twice_is_safe(make_database):
    url = make_database()
    first = run_cli("migrate", env=env_for(url))
    assert first.returncode == 0, first.stderr
    assert "applied 2 migration(s)" in first.stdout
    second = run_cli("migrate", env=env_for(url))
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert {"id", "name", "is_enabled", "created_at", "description", "updated_at"} <= table_columns(url)
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1").fetchall()
    assert [r[0] for r in applied] == ["0001.flags-table", "0002.flag-description-updated-at"]


def test_init_db_is_migrate(make_database):
    url = make_database()
    result = run_cli("init-db", env=env_for(url))
    assert result.returncode == 0, result.stderr
    assert "description" in table_columns(url)


@pytest.mark.parametrize("runs", [4])
def test_concurrent_migrations_apply_once(make_database, runs):
    url = make_database()
    with ThreadPoolExecutor(runs) as pool:
        results = list(pool.map(lambda _: run_cli("migrate", env=env_for(url)), range(runs)))
    assert [r.returncode for r in results] == [0] * runs, [r.stderr for r in results]
    assert sum("applied 2 migration(s)" in r.stdout for r in results) == 1
    assert sum("up to date" in r.stdout for r in results) == runs - 1
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0]
    assert count == 2


def test_migrate_adopts_a_database_created_by_the_original_service(make_database):
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE flags (id SERIAL PRIMARY KEY, name VARCHAR(100) UNIQUE NOT NULL,"
            " is_enabled BOOLEAN NOT NULL DEFAULT false, created_at TIMESTAMPTZ DEFAULT NOW())"
        )
        conn.execute("INSERT INTO flags (name, is_enabled) VALUES ('old', true)")
        conn.execute("INSERT INTO flags (name, created_at) VALUES ('older', NULL)")
    result = run_cli("migrate", env=env_for(url))
    assert result.returncode == 0, result.stderr
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, is_enabled, created_at IS NOT NULL, updated_at IS NOT NULL FROM flags ORDER BY name"
        ).fetchall()
    assert rows == [("old", True, True, True), ("older", False, True, True)]


def test_migration_blocked_by_a_held_lock_waits_then_proceeds(make_database):
    """A second host waits on the advisory lock rather than racing the first."""
    from togglemaster.migrate import ADVISORY_LOCK_KEY

    url = make_database()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        proc = subprocess.Popen(
            [togglemaster_exe(), "migrate"], env=env_for(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        assert "description" not in table_columns(url)
        holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "applied 2 migration(s)" in out


# --- release identity ---------------------------------------------------------------------


def test_wheel_carries_the_build_id(tmp_path):
    env = dict(__import__("os").environ, TOGGLEMASTER_BUILD_ID="ci-4242")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "--wheel-dir", str(tmp_path), str(SERVICE_DIR)],
        env=env, check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("togglemaster-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        generated = zf.read("togglemaster/_build.py").decode()
        assert "togglemaster/openapi.json" in zf.namelist()
        assert any(n.startswith("togglemaster/migrations/0001") for n in zf.namelist())
    assert "BUILD_ID = 'ci-4242'" in generated
    assert not (SERVICE_DIR / "src" / "togglemaster" / "_build.py").exists()


def test_version_command_prints_version_and_build():
    result = subprocess.run([togglemaster_exe(), "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    version, build = result.stdout.split()
    assert version[0].isdigit() and build
