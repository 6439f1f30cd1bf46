"""The service verifies its database as it verifies RDS: sslmode=verify-full against the CA bundle the
base role installed (here the scenario's CA, which signed the database container's certificate).

The env-file names both; every connection the service holds is encrypted; and the release's own
`togglemaster check` (psycopg for the connection, yoyo for the migration state), run as the service
user with the env-file, connects with it and is refused with another CA or another host name.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import DB, READ_ENV_FILE, REPO, WEB, env_file, on_host

SHARED = yaml.safe_load((REPO / "playbooks/group_vars/all/database.yml").read_text())
SCENARIO_VARS = yaml.safe_load((REPO / "molecule/deploy/inventory/group_vars/molecule.yml").read_text())
# The scenario's CA (prepare.yml, role local_ca), in its state directory.
CA_CERT = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "state" / "ca" / "ca.crt"

# `togglemaster check` of the live release as the service user, with the env-file's variables and the
# overrides in argv[1] (JSON), the way systemd's EnvironmentFile gives them; no secret on a command line.
CHECK = READ_ENV_FILE + r"""
import os, pwd, sys
env.update(json.loads(sys.argv[1]))
user = pwd.getpwnam("togglemaster")
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
os.chdir("/")
os.execve("/opt/togglemaster/current/venv/bin/togglemaster", ["togglemaster", "check"], env)
"""


def check(**overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", WEB, "python3", "-c", CHECK, json.dumps(overrides)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def db_address() -> str:
    return on_host(DB, "hostname -I").split()[0]


def test_the_env_file_names_verify_full_and_the_database_ca_bundle():
    env = env_file()
    assert env["DB_SSLMODE"] == SHARED["db_sslmode"] == "verify-full"
    assert env["PGSSLROOTCERT"] == SHARED["db_ca_bundle_path"]
    assert env["DB_HOST"] == SCENARIO_VARS["db_host"]
    bundle = on_host(WEB, f"stat -c '%U %a' {env['PGSSLROOTCERT']} && cat {env['PGSSLROOTCERT']}")
    owner_mode, pem = bundle.split("\n", 1)
    assert owner_mode == "root 644"
    assert pem.strip() == CA_CERT.read_text().strip(), "the bundle is not the CA that signed the database's certificate"


def test_every_connection_of_the_service_is_encrypted():
    rows = on_host(DB, "runuser -u postgres -- psql -X -tA -c \"SELECT a.usename, s.ssl, s.version FROM pg_stat_ssl s"
                       " JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'togglemaster'\"").split("\n")
    rows = [row.split("|") for row in rows if row]
    assert rows, "the service holds no database connection: nothing was checked"
    assert {(user, ssl) for user, ssl, _ in rows} == {("togglemaster_app", "t")}, rows
    assert {version for _, _, version in rows} <= {"TLSv1.2", "TLSv1.3"}, rows


def test_the_release_connects_with_verify_full_as_the_service_does():
    result = check()
    assert result.returncode == 0, result.stderr
    assert "(sslmode=verify-full)" in result.stdout and "schema up to date" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def other_ca() -> str:
    """Another CA's certificate on the web host, named exactly like the scenario's CA: only its key differs.
    Readable by the service user, so that a refusal is about the signature, not the file."""
    subject = on_host(WEB, f"openssl x509 -in {SHARED['db_ca_bundle_path']} -noout -subject -nameopt compat").strip()
    on_host(WEB, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                 f" -subj '{subject.removeprefix('subject=')}' -keyout /tmp/other-ca.key -out /tmp/other-ca.crt"
                 " && chmod 0644 /tmp/other-ca.crt")
    return "/tmp/other-ca.crt"


@pytest.mark.parametrize("bundle", ["system trust store", "another CA"])
def test_the_release_refuses_a_database_certificate_another_ca_signed(other_ca, bundle):
    rootcert = other_ca if bundle == "another CA" else "/etc/ssl/certs/ca-certificates.crt"
    result = check(PGSSLROOTCERT=rootcert)
    assert result.returncode == 3, result.stderr
    assert "certificate verify failed" in result.stderr, result.stderr


def test_the_release_refuses_a_host_name_the_certificate_does_not_name(db_address):
    # The database's own address under another name, as a DNS alias pointing at it would give it.
    result = check(DB_HOST="tm-deploy-alias", PGHOSTADDR=db_address)
    assert result.returncode == 3, result.stderr
    assert 'does not match host name "tm-deploy-alias"' in result.stderr, result.stderr
