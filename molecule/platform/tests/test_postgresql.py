"""The postgresql role on the db host, reached from the web host like the service reaches RDS: over
TLS with sslmode=verify-full, against the CA bundle the base role installed (the scenario's CA, which
signed the server's certificate), as the service does with RDS's."""

from __future__ import annotations

import json

import pytest
import testinfra

from conftest import SCENARIO, ansible_playbook, changed

testinfra_hosts = ["db"]

DB_HOST = "tm-platform-db"  # the container name, resolved on the scenario's Docker network
CONNINFO = "port=5432 dbname=togglemaster user=togglemaster"
BUNDLE = "/etc/ssl/ca-bundles/database.pem"  # converge.yml's base_ca_bundles entry "database"
VERIFIED = f"sslmode=verify-full sslrootcert={BUNDLE}"
QUERY = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
SERVER_DIR = "/etc/postgresql/15/main"
# A CA the test makes on the web host, with the same subject as the scenario's CA but its own key.
OTHER_CA = "/root/other-ca.crt"


@pytest.fixture(scope="module")
def web(request):
    """The web host: the client side. .pgpass there holds the right password (prepare.yml)."""
    return testinfra.get_host(
        "ansible://tm-platform-web",
        ansible_inventory=request.config.option.ansible_inventory,
    )


@pytest.fixture(scope="module")
def db_address(host) -> str:
    return host.interface("eth0").addresses[0]


def psql(web, conninfo: str, sql: str = QUERY):
    return web.run(f"psql '{conninfo} {CONNINFO}' -tAc \"{sql}\"")


@pytest.fixture(scope="module")
def other_ca(web) -> str:
    """Another CA's certificate, named exactly like the scenario's CA: only its key differs."""
    subject = web.check_output(f"openssl x509 -in {BUNDLE} -noout -subject -nameopt compat").removeprefix("subject=")
    web.run_expect([0], f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                        f" -subj '{subject}' -keyout /root/other-ca.key -out {OTHER_CA}")
    return OTHER_CA


def test_postgresql_runs(host):
    assert host.service("postgresql@15-main").is_running
    assert host.service("postgresql@15-main").is_enabled


def test_postgresql_listens_only_on_loopback_and_its_own_address(host, db_address):
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket(f"tcp://{db_address}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_passwords_are_stored_as_scram(host):
    out = host.check_output("runuser -u postgres -- psql -tAc \"show password_encryption\"")
    assert out == "scram-sha-256"
    stored = host.check_output(
        "runuser -u postgres -- psql -tAc \"select left(rolpassword, 14) from pg_authid where rolname = 'togglemaster'\""
    )
    assert stored == "SCRAM-SHA-256$"


def test_the_server_key_is_the_postgres_users_only_and_the_ca_signed_its_certificate(host, web):
    key = host.file(f"{SERVER_DIR}/server.key")
    assert (key.user, key.group, key.mode) == ("postgres", "postgres", 0o600)
    assert host.check_output("runuser -u postgres -- psql -tAc 'show ssl_cert_file'") == f"{SERVER_DIR}/server.crt"
    # The certificate the server presents, checked on the web host against the bundle it was given.
    presented = web.run(f"openssl s_client -starttls postgres -connect {DB_HOST}:5432 -servername {DB_HOST}"
                        f" -CAfile {BUNDLE} -verify_return_error -verify_hostname {DB_HOST} </dev/null")
    assert presented.rc == 0, presented.stderr
    assert "Verify return code: 0 (ok)" in presented.stdout


@pytest.mark.parametrize("name", ["container name", "address"])
def test_web_logs_in_with_verify_full_by_each_name_in_the_certificate(web, db_address, name):
    server = DB_HOST if name == "container name" else db_address
    result = psql(web, f"host={server} {VERIFIED}")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


@pytest.mark.parametrize("bundle", ["another CA", "the system trust store"])
def test_a_server_certificate_the_bundle_did_not_sign_is_refused(web, other_ca, bundle):
    rootcert = other_ca if bundle == "another CA" else "/etc/ssl/certs/ca-certificates.crt"
    result = psql(web, f"host={DB_HOST} sslmode=verify-full sslrootcert={rootcert}", "select 1")
    assert result.rc != 0, f"verify-full with {bundle} was accepted"
    assert "certificate verify failed" in result.stderr, result.stderr


def test_a_host_name_the_certificate_does_not_name_is_refused(web, db_address):
    # The server's own address, asked for under a name it was not given (as a DNS alias would).
    result = psql(web, f"host=tm-platform-alias hostaddr={db_address} {VERIFIED}", "select 1")
    assert result.rc != 0, "verify-full accepted a name that is not in the certificate"
    assert 'does not match host name "tm-platform-alias"' in result.stderr, result.stderr


@pytest.fixture
def certificate_for_the_name_only(host):
    """The role again with the container's name as the only name, then converge's names again."""
    name_only = ansible_playbook(SCENARIO / "converge.yml", "--tags", "postgresql_config",
                                 "-e", json.dumps({"postgresql_ssl_cert_names": [DB_HOST]}))
    try:
        yield changed(name_only, DB_HOST)
    finally:
        changed(ansible_playbook(SCENARIO / "converge.yml", "--tags", "postgresql_config"), DB_HOST)


def test_a_name_taken_off_the_certificate_is_refused_and_the_others_still_work(web, db_address,
                                                                                certificate_for_the_name_only):
    assert certificate_for_the_name_only > 0, "new names must remake the certificate"
    by_address = psql(web, f"host={db_address} {VERIFIED}", "select 1")
    assert by_address.rc != 0, "the address was taken off the certificate but is still accepted"
    assert f'does not match host name "{db_address}"' in by_address.stderr, by_address.stderr
    by_name = psql(web, f"host={DB_HOST} {VERIFIED}")
    assert by_name.rc == 0 and by_name.stdout.strip() == "t", by_name.stderr


def test_web_cannot_log_in_without_tls(web):
    result = psql(web, f"host={DB_HOST} sslmode=disable", "select 1")
    assert result.rc != 0
    assert "no encryption" in result.stderr


def test_wrong_password_is_rejected(web):
    result = web.run(f"PGPASSFILE=/dev/null PGPASSWORD=wrong-password psql 'host={DB_HOST} {VERIFIED} {CONNINFO}'"
                     " -tAc 'select 1'")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_other_roles_are_not_accepted_from_the_network(web):
    result = web.run(f"PGPASSFILE=/dev/null PGPASSWORD=x psql 'host={DB_HOST} dbname=postgres user=postgres {VERIFIED}'"
                     " -tAc 'select 1'")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr
