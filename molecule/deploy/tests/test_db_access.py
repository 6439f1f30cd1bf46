"""The service's own database role after a deploy (role db_access), checked the way the service
logs in: from the web host, with the env-file's user and password, over TLS. What the master user
owns is made on the database host as the master user itself (psql as postgres, then SET ROLE), so
no test needs the master password.

The database host runs PostgreSQL 15 standing in for RDS (16): the rules checked here hold on both.
"""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from conftest import DB, READ_ENV_FILE, WEB, on_host, playbook, recap

APP = "togglemaster_app"
MASTER = "togglemaster"
DATABASE = "togglemaster"
# A schema and tables of the master user's, made for the tests and removed after each.
MASTERS_SCHEMA = "tm_master_only"
MASTERS_TABLE = "tm_master_table"
# A database as an earlier version left it (the service logged in as the master user).
LEGACY_DATABASE = "tm_legacy"
HBA = "/etc/postgresql/15/main/pg_hba.conf"

# One statement as the service's role, with the env-file's connection settings, in a transaction
# that is always rolled back: a statement that should be refused changes nothing even if it is
# not. Prints {"rows": [...]} or {"code": SQLSTATE, "error": primary message}; never the password.
AS_SERVICE = READ_ENV_FILE + r"""
import sys
import psycopg2
conn = psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"], dbname=env["DB_NAME"], user=env["DB_USER"],
                        password=env["DB_PASSWORD"], sslmode=env["DB_SSLMODE"], sslrootcert=env.get("PGSSLROOTCERT"),
                        application_name="test_db_access")
try:
    with conn.cursor() as cur:
        cur.execute(sys.argv[1])
        print(json.dumps({"rows": cur.fetchall() if cur.description else []}, default=str))
except psycopg2.Error as exc:
    print(json.dumps({"code": exc.pgcode, "error": exc.diag.message_primary}))
finally:
    conn.rollback()
    conn.close()
"""


def as_service(statement: str) -> dict:
    proc = subprocess.run(["docker", "exec", WEB, "python3", "-c", AS_SERVICE, statement],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{WEB}: could not log in as the service: {proc.stderr[-1000:]}"
    return json.loads(proc.stdout)


def refused(statement: str) -> tuple[str, str]:
    """(SQLSTATE, message) of a statement the service's role must be refused."""
    result = as_service(statement)
    assert "error" in result, f"the service's role may run: {statement}"
    return result["code"], result["error"]


def psql(sql: str, database: str = DATABASE, role: str | None = MASTER) -> list[str]:
    """SQL on the database host through the Unix socket, as the postgres superuser or, with SET ROLE, as `role`;
    one line per row, columns separated by |."""
    commands = ([f"-c 'SET ROLE {role}'"] if role else []) + [f"-c {shlex.quote(sql)}"]
    out = on_host(DB, f"runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -d {database} {' '.join(commands)}")
    return out.splitlines()


@pytest.fixture
def masters_objects():
    """A schema with a table, and a table in public, all the master user's."""
    psql(f"CREATE SCHEMA {MASTERS_SCHEMA}; CREATE TABLE {MASTERS_SCHEMA}.secrets (value text);"
         f"CREATE TABLE public.{MASTERS_TABLE} (id int)")
    try:
        yield
    finally:
        psql(f"DROP SCHEMA IF EXISTS {MASTERS_SCHEMA} CASCADE; DROP TABLE IF EXISTS public.{MASTERS_TABLE}")


def test_the_service_logs_in_as_its_own_role_not_the_master():
    assert on_host(WEB, "grep '^DB_USER=' /etc/togglemaster/togglemaster.env").strip() == f'DB_USER="{APP}"'
    assert as_service("SELECT current_user, session_user") == {"rows": [[APP, APP]]}


def test_the_service_role_may_log_in_and_nothing_more():
    attributes = as_service("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
                            " FROM pg_roles WHERE rolname = current_user")
    assert attributes == {"rows": [[True, False, False, False, False, False]]}


def test_the_service_role_cannot_create_a_role():
    assert refused("CREATE ROLE tm_intruder LOGIN") == ("42501", "permission denied to create role")


def test_the_service_role_cannot_drop_another_schema(masters_objects):
    assert refused(f"DROP SCHEMA {MASTERS_SCHEMA} CASCADE") == ("42501", f"must be owner of schema {MASTERS_SCHEMA}")
    assert refused("DROP SCHEMA public CASCADE") == ("42501", "must be owner of schema public")


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("CREATE SCHEMA tm_intruder", f"permission denied for database {DATABASE}"),
        ("CREATE TABLE public.tm_intruder (id int)", "permission denied for schema public"),
        (f"SELECT * FROM {MASTERS_SCHEMA}.secrets", f"permission denied for schema {MASTERS_SCHEMA}"),
        (f"SELECT * FROM public.{MASTERS_TABLE}", f"permission denied for table {MASTERS_TABLE}"),
        (f"INSERT INTO public.{MASTERS_TABLE} VALUES (1)", f"permission denied for table {MASTERS_TABLE}"),
        (f"ALTER TABLE public.{MASTERS_TABLE} ADD COLUMN extra int", f"must be owner of table {MASTERS_TABLE}"),
        (f"DROP TABLE public.{MASTERS_TABLE}", f"must be owner of table {MASTERS_TABLE}"),
        (f"GRANT {MASTER} TO {APP}", f'must have admin option on role "{MASTER}"'),
        (f"ALTER ROLE {APP} CREATEROLE", "permission denied"),
    ],
    ids=["create-schema", "create-in-public", "read-other-schema", "read-table", "write-table", "alter-table",
         "drop-table", "join-the-master", "give-itself-createrole"],
)
def test_the_service_role_cannot_reach_what_it_does_not_own(masters_objects, statement, error):
    assert refused(statement) == ("42501", error)


def test_the_service_tables_are_the_service_roles_in_its_own_schema():
    tables = psql("SELECT schemaname, tablename, tableowner FROM pg_tables"
                  " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2", role=None)
    assert {"flags", "_yoyo_migration"} <= {line.split("|")[1] for line in tables}, tables
    assert all(line.startswith(f"{APP}|") and line.endswith(f"|{APP}") for line in tables), tables
    assert psql(f"SELECT nspowner::regrole FROM pg_namespace WHERE nspname = '{APP}'", role=None) == [APP]


def test_the_service_role_password_is_stored_as_scram():
    stored = psql(f"SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '{APP}'", role=None)
    assert stored == ["SCRAM-SHA-256$"]


def test_the_master_user_may_create_roles_and_is_no_superuser():
    # As RDS's master user: the database host stands in for RDS.
    attributes = psql(f"SELECT rolcanlogin, rolcreaterole, rolsuper FROM pg_roles WHERE rolname = '{MASTER}'")
    assert attributes == ["t|t|f"]


@pytest.fixture
def legacy_database():
    """A database as an earlier version left it: the service's tables in public, the master user's, with a flag
    and yoyo's record; the web host may reach it like the application database."""
    psql(f"CREATE DATABASE {LEGACY_DATABASE} OWNER {MASTER}", database="postgres", role=None)
    on_host(DB, f"cp {HBA} {HBA}.test && grep '^hostssl' {HBA}.test | sed 's/^hostssl  {DATABASE}  /hostssl  {LEGACY_DATABASE}  /'"
                f" >> {HBA} && runuser -u postgres -- psql -X -q -c 'SELECT pg_reload_conf()'")
    try:
        psql("CREATE TABLE flags (id SERIAL PRIMARY KEY, name VARCHAR(100) UNIQUE NOT NULL);"
             "INSERT INTO flags (name) VALUES ('kept-from-before');"
             "CREATE TABLE _yoyo_migration (migration_hash VARCHAR(64) PRIMARY KEY, migration_id VARCHAR(255));"
             "INSERT INTO _yoyo_migration VALUES ('hash', '0001.flags-table')", database=LEGACY_DATABASE)
        yield
    finally:
        on_host(DB, f"mv {HBA}.test {HBA} && runuser -u postgres -- psql -X -q -c 'SELECT pg_reload_conf()'")
        psql(f"DROP DATABASE IF EXISTS {LEGACY_DATABASE} WITH (FORCE)", database="postgres", role=None)


def test_tables_an_earlier_version_left_in_public_become_the_service_roles_once(legacy_database):
    # release_build too: the deploy play's role arguments name the release it builds.
    deploy = ("deploy.yml", "--tags", "release_build,db_access", "-e", f"db_name={LEGACY_DATABASE}")
    first = playbook(*deploy)
    assert first.returncode == 0, first.stdout[-3000:]
    assert f"moved from public to schema {APP}, owned by it: _yoyo_migration, flags" in first.stdout
    tables = psql("SELECT schemaname, tablename, tableowner FROM pg_tables WHERE schemaname IN ('public', "
                  f"'{APP}') ORDER BY 1, 2", database=LEGACY_DATABASE, role=None)
    assert tables == [f"{APP}|_yoyo_migration|{APP}", f"{APP}|flags|{APP}"]
    assert psql(f"SELECT name FROM {APP}.flags", database=LEGACY_DATABASE, role=None) == ["kept-from-before"]
    second = playbook(*deploy)
    assert second.returncode == 0 and recap(second.stdout)[WEB][0] == 0, second.stdout[-3000:]
