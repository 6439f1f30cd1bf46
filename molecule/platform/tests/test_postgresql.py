"""The postgresql role on the db host, reached from the web host like the service reaches RDS."""

import pytest
import testinfra

testinfra_hosts = ["db"]

DB_HOST = "tm-platform-db"  # the container name, resolved on the scenario's Docker network
CONNINFO = f"host={DB_HOST} port=5432 dbname=togglemaster user=togglemaster"
QUERY = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def web(request):
    """The web host: the client side. .pgpass there holds the right password (prepare.yml)."""
    return testinfra.get_host(
        "ansible://tm-platform-web",
        ansible_inventory=request.config.option.ansible_inventory,
    )


def _db_address(host) -> str:
    return host.interface("eth0").addresses[0]


def test_postgresql_runs(host):
    assert host.service("postgresql@15-main").is_running
    assert host.service("postgresql@15-main").is_enabled


def test_postgresql_listens_only_on_loopback_and_its_own_address(host):
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket(f"tcp://{_db_address(host)}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_passwords_are_stored_as_scram(host):
    out = host.check_output("runuser -u postgres -- psql -tAc \"show password_encryption\"")
    assert out == "scram-sha-256"
    stored = host.check_output(
        "runuser -u postgres -- psql -tAc \"select left(rolpassword, 14) from pg_authid where rolname = 'togglemaster'\""
    )
    assert stored == "SCRAM-SHA-256$"


def test_web_logs_in_over_tls_with_scram(web):
    result = web.run(f"psql '{CONNINFO} sslmode=require' -tAc \"{QUERY}\"")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_web_cannot_log_in_without_tls(web):
    result = web.run(f"psql '{CONNINFO} sslmode=disable' -tAc 'select 1'")
    assert result.rc != 0
    assert "no encryption" in result.stderr


def test_wrong_password_is_rejected(web):
    result = web.run(f"PGPASSFILE=/dev/null PGPASSWORD=wrong-password psql '{CONNINFO} sslmode=require' -tAc 'select 1'")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_other_roles_are_not_accepted_from_the_network(web):
    result = web.run(f"PGPASSFILE=/dev/null PGPASSWORD=x psql 'host={DB_HOST} dbname=postgres user=postgres sslmode=require' -tAc 'select 1'")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr
