"""The base role's CA bundles: every host has the scenario's CA as /etc/ssl/ca-bundles/database.pem
(converge.yml), outside the system trust store; a bundle from a URL comes over verified HTTPS, pinned
by its checksum; a bundle taken off the list is removed.

The URL tests download from an HTTPS server the test starts on the database host, with the
certificate the scenario's CA signed for it (the postgresql role's). The web host trusts that CA for
these runs only (SSL_CERT_FILE), as it trusts the public CAs for AWS's bundle. Each test puts the
converge list back, so verify can run again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import testinfra

from conftest import CA_CERT, ansible_playbook, changed

testinfra_hosts = ["all"]

WEB = "tm-platform-web"
FOLDER = "/etc/ssl/ca-bundles"
SERVED = "/srv/bundles/served.pem"
URL = "https://tm-platform-db:8443/served.pem"
SERVER = """
import functools, http.server, ssl
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/srv/bundles")
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/etc/postgresql/15/main/server.crt", "/etc/postgresql/15/main/server.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def said(result) -> str:
    """The run's output with its line breaks and indentation collapsed (long messages are wrapped)."""
    return " ".join(result.stdout.split())


def database_bundle() -> dict[str, str]:
    return {"name": "database", "content": CA_CERT.read_text(encoding="utf-8")}


def converge_bundles(tmp_path: Path, bundles: list[dict[str, str]], trust_scenario_ca: bool = True):
    """The base role's bundle phase on the web host with this list."""
    environment = f"  environment:\n    SSL_CERT_FILE: {FOLDER}/database.pem\n" if trust_scenario_ca else ""
    playbook = tmp_path / "ca_bundles.yml"
    playbook.write_text(
        f"- hosts: {WEB}\n  gather_facts: false\n{environment}  roles:\n    - role: base\n"
        f"      vars:\n        base_ca_bundles: {json.dumps(bundles)}\n",
        encoding="utf-8",
    )
    return ansible_playbook(playbook, "--tags", "base_ca_bundles")


@pytest.fixture(scope="module")
def web(request):
    return testinfra.get_host(f"ansible://{WEB}", ansible_inventory=request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def db(request):
    return testinfra.get_host("ansible://tm-platform-db", ansible_inventory=request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def served(db) -> str:
    """An HTTPS server on the database host with one PEM file (the host's snakeoil certificate); its content."""
    db.run("systemctl stop tm-bundle-server")
    db.run_expect([0], f"install -d /srv/bundles && cp /etc/ssl/certs/ssl-cert-snakeoil.pem {SERVED}")
    db.run_expect([0], f"systemd-run --unit=tm-bundle-server --collect python3 -c '{SERVER}'")
    db.run_expect([0], "for i in $(seq 50); do ss -ltn | grep -q ':8443 ' && exit 0; sleep 0.2; done; exit 1")
    yield db.file(SERVED).content_string
    db.run("systemctl stop tm-bundle-server; rm -rf /srv/bundles")


@pytest.fixture
def puts_the_converge_list_back(web, tmp_path):
    yield
    changed(converge_bundles(tmp_path, [database_bundle()]), WEB)
    assert web.run(f"ls {FOLDER}").stdout.split() == ["database.pem"]


def test_every_host_has_the_database_ca_in_its_own_file(host):
    folder = host.file(FOLDER)
    assert (folder.user, folder.group, folder.mode) == ("root", "root", 0o755)
    bundle = host.file(f"{FOLDER}/database.pem")
    assert (bundle.user, bundle.group, bundle.mode) == ("root", "root", 0o644)
    assert bundle.content_string.strip() == CA_CERT.read_text(encoding="utf-8").strip()


def test_the_system_trust_store_does_not_trust_the_bundle(host):
    # Only a client pointed at the bundle (the service's PGSSLROOTCERT) trusts the database's CA.
    result = host.run(f"openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt {FOLDER}/database.pem")
    assert result.rc != 0, "the scenario's CA is in the system trust store"
    assert "self-signed certificate" in result.stdout + result.stderr


def test_a_bundle_from_a_url_is_downloaded_over_verified_https_and_pinned(web, tmp_path, served,
                                                                         puts_the_converge_list_back):
    digest = hashlib.sha256(served.encode()).hexdigest()
    bundles = [database_bundle(), {"name": "served", "url": URL, "checksum": f"sha256:{digest}"}]
    assert changed(converge_bundles(tmp_path, bundles), WEB) > 0
    bundle = web.file(f"{FOLDER}/served.pem")
    assert (bundle.user, bundle.mode) == ("root", 0o644)
    assert bundle.content_string == served
    assert changed(converge_bundles(tmp_path, bundles), WEB) == 0, "the same list again must change nothing"


def test_a_download_that_does_not_match_its_checksum_installs_nothing(web, tmp_path, served,
                                                                      puts_the_converge_list_back):
    bundles = [database_bundle(), {"name": "served", "url": URL, "checksum": "sha256:" + "0" * 64}]
    result = converge_bundles(tmp_path, bundles)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "did not match " + "0" * 64 in said(result), result.stdout[-3000:]
    assert not web.file(f"{FOLDER}/served.pem").exists


def test_a_server_the_host_does_not_trust_is_refused(web, tmp_path, served, puts_the_converge_list_back):
    # Without the scenario's CA, the server's certificate chains to nothing in the system trust store.
    result = converge_bundles(tmp_path, [database_bundle(), {"name": "served", "url": URL}], trust_scenario_ca=False)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "CERTIFICATE_VERIFY_FAILED" in said(result), result.stdout[-3000:]
    assert not web.file(f"{FOLDER}/served.pem").exists


def test_a_bundle_taken_off_the_list_is_removed_and_only_listed_ones_stay(web, tmp_path, served,
                                                                          puts_the_converge_list_back):
    assert changed(converge_bundles(tmp_path, [database_bundle(), {"name": "served", "url": URL}]), WEB) > 0
    assert web.file(f"{FOLDER}/served.pem").content_string == served
    assert changed(converge_bundles(tmp_path, [{"name": "served", "url": URL}]), WEB) > 0
    assert web.run(f"ls {FOLDER}").stdout.split() == ["served.pem"]


def test_a_plain_http_url_is_refused_before_any_change(web, tmp_path):
    before = web.run(f"ls {FOLDER}").stdout
    result = converge_bundles(tmp_path, [{"name": "served", "url": "http://tm-platform-db:8443/served.pem"}])
    assert result.returncode != 0, result.stdout[-3000:]
    assert "base_ca_bundles entry 1" in said(result) and "url (https://...)" in said(result), result.stdout[-3000:]
    assert web.run(f"ls {FOLDER}").stdout == before
