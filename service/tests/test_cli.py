"""The admin processes through the console script: configuration errors, check, migrate."""
from __future__ import annotations

import socket
import struct
import subprocess
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from support import env_for, run_cli, togglemaster_exe, wait_until

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
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", API_TOKEN="0123456789abcdef", API_TOKEN_PREVIOUS="short"),
         "API_TOKEN_PREVIOUS is set but shorter than 16 characters"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", API_TOKEN_PREVIOUS="0123456789abcdef"),
         "API_TOKEN_PREVIOUS is set without API_TOKEN"),
        (bare_env(DB_HOST="h", DB_NAME="d", DB_USER="u", MIGRATION_LOCK_TIMEOUT="0"), "MIGRATION_LOCK_TIMEOUT must be"),
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


def test_database_url_wins_over_db_variables(make_database):
    chosen, ignored = make_database(), make_database()
    other = psycopg.conninfo.conninfo_to_dict(ignored)
    env = env_for(
        chosen,
        DB_HOST=str(other["host"]),
        DB_PORT=str(other["port"]),
        DB_NAME=str(other["dbname"]),
        DB_USER=str(other["user"]),
        DB_PASSWORD=str(other.get("password", "")),
    )
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert "description" in table_columns(chosen)
    assert table_columns(ignored) == set()


SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class FakeDatabase:
    """Listens where the service is told the database is and records, per connection, what
    libpq sends before authentication: "ssl" (an SSLRequest, refused), then the startup
    parameters (user, database). It never authenticates anyone, so the command exits 3."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.port = self._listener.getsockname()[1]
        self.connections: list[list[object]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            seen: list[object] = []
            self.connections.append(seen)
            with conn:
                try:
                    self._negotiate(conn, seen)
                except (OSError, ValueError):
                    pass

    @staticmethod
    def _negotiate(conn: socket.socket, seen: list[object]) -> None:
        conn.settimeout(10)
        with conn.makefile("rb") as stream:
            while True:
                head = stream.read(8)
                if len(head) < 8:
                    return
                length, code = struct.unpack("!ii", head)
                if code == GSSENC_REQUEST:  # only with Kerberos credentials; not what is tested
                    conn.sendall(b"N")
                elif code == SSL_REQUEST:
                    seen.append("ssl")
                    conn.sendall(b"N")
                else:  # StartupMessage: NUL-separated key/value pairs
                    fields = stream.read(length - 8).rstrip(b"\0").split(b"\0")
                    seen.append(dict(zip((f.decode() for f in fields[0::2]), (f.decode() for f in fields[1::2]))))
                    return


@pytest.fixture
def fake_database():
    made: list[FakeDatabase] = []

    def make(host: str = "127.0.0.1", port: int = 0) -> FakeDatabase:
        made.append(FakeDatabase(host, port))
        return made[-1]

    yield make
    for server in made:
        server.close()


def attempts(server: FakeDatabase) -> list[list[object]]:
    """What the server saw, once the command that connected to it has exited."""
    wait_until(lambda: bool(server.connections), 5, "no connection reached the fake database")
    return server.connections


def test_db_port_and_db_sslmode_default_to_5432_and_prefer(fake_database):
    # 127.0.0.2 is loopback too: the port PostgreSQL itself may hold on 127.0.0.1 stays free.
    try:
        server = fake_database("127.0.0.2", 5432)
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2:5432 to stand in for the default port: {exc}")
    result = run_cli("check", env=bare_env(DB_HOST="127.0.0.2", DB_NAME="d", DB_USER="u", DB_CONNECT_TIMEOUT="1"))
    assert result.returncode == 3, result.stderr
    assert "u@127.0.0.2:5432/d (sslmode=prefer)" in result.stderr
    # prefer, on the wire: ask for SSL first, and go on without it when the server declines.
    ssl, startup = attempts(server)[0]
    assert ssl == "ssl" and (startup["user"], startup["database"]) == ("u", "d")


@pytest.mark.parametrize(
    "url_tail, db_vars, expected",
    [
        ("@127.0.0.1/d", {"DB_PORT": "{port}", "DB_SSLMODE": "disable"}, "(sslmode=disable)"),
        ("@127.0.0.1:{port}/d?sslmode=disable", {"DB_PORT": "1", "DB_SSLMODE": "require"}, "(sslmode=disable)"),
    ],
    ids=["url-lacks-them-db-vars-fill-in", "url-has-them-db-vars-ignored"],
)
def test_database_url_takes_port_and_sslmode_from_db_variables_only_when_it_lacks_them(
    fake_database, url_tail, db_vars, expected
):
    server = fake_database()
    env = env_for(
        "postgresql://u" + url_tail.format(port=server.port),
        DB_CONNECT_TIMEOUT="1",
        **{k: v.format(port=server.port) for k, v in db_vars.items()},
    )
    result = run_cli("check", env=env)
    assert result.returncode == 3, result.stderr
    assert f"u@127.0.0.1:{server.port}/d {expected}" in result.stderr
    # Reached the fake server's port, and without asking for SSL: sslmode=disable.
    first = attempts(server)[0]
    assert len(first) == 1 and first[0]["database"] == "d", first


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


def test_failing_migration_exits_4_and_leaves_the_schema_as_it_was(make_database):
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        # Not ToggleMaster's table: 0001 adopts it (IF NOT EXISTS), 0002 finds no created_at.
        conn.execute("CREATE TABLE flags (id SERIAL PRIMARY KEY, label TEXT)")
    result = run_cli("migrate", env=env_for(url))
    assert result.returncode == 4, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "migration failed" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert table_columns(url) == {"id", "label"}  # 0002's first statements were rolled back
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1").fetchall()
    assert [r[0] for r in applied] == ["0001.flags-table"]


def test_migration_lock_held_past_the_timeout_exits_4(make_database):
    from togglemaster.migrate import ADVISORY_LOCK_KEY

    url = make_database()
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        result = run_cli("migrate", env=env_for(url, MIGRATION_LOCK_TIMEOUT="1"), timeout=60)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert result.stderr.strip() == "togglemaster: another migration held the lock for more than 1 s"
    assert table_columns(url) == set()


# --- release identity ---------------------------------------------------------------------


def test_wheel_carries_the_build_id_and_its_data_files(release):
    with zipfile.ZipFile(release.wheel) as zf:
        names = zf.namelist()
    assert "togglemaster/openapi.json" in names
    assert any(n.startswith("togglemaster/migrations/0001") for n in names)
    assert not (SERVICE_DIR / "src" / "togglemaster" / "_build.py").exists()


def test_version_command_prints_the_version_and_build_id_baked_into_the_wheel(release):
    env = release.env(env_for("postgresql://u@127.0.0.1/db"))
    result = subprocess.run(release.argv("version"), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{release.version} {release.build}\n"
    flag = subprocess.run(release.argv("--version"), env=env, capture_output=True, text=True, timeout=30)
    assert flag.stdout == f"togglemaster {release.version} (build {release.build})\n"


def test_wheel_built_without_a_build_id_reports_dev(release_without_build_id):
    release = release_without_build_id
    env = release.env(env_for("postgresql://u@127.0.0.1/db"))
    result = subprocess.run(release.argv("version"), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{release.version} dev\n"
