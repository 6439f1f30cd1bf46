"""The reverse_proxy role on the web host, in front of the stand-in upstream on 127.0.0.1:8000."""

import json

testinfra_hosts = ["web"]

ACCESS_LOG = "/var/log/nginx/togglemaster.access.log"


def _get(host, url: str, *headers: str) -> dict:
    args = " ".join(f"-H '{h}'" for h in headers)
    out = host.check_output(f"curl -ksS --fail-with-body {args} {url}")
    return json.loads(out)


def test_nginx_runs_and_listens_on_80_and_443(host):
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("tcp://0.0.0.0:443").is_listening


def test_self_signed_certificate_is_in_place_with_private_key_modes(host):
    cert = host.file("/etc/nginx/tls/togglemaster.crt")
    key = host.file("/etc/nginx/tls/togglemaster.key")
    assert cert.is_file and cert.user == "root" and cert.mode == 0o644
    assert key.is_file and key.user == "root" and key.group == "root" and key.mode == 0o600
    assert host.file("/etc/nginx/tls").mode == 0o750
    served = host.check_output("openssl s_client -connect 127.0.0.1:443 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")
    on_disk = host.check_output("openssl x509 -in /etc/nginx/tls/togglemaster.crt -noout -fingerprint -sha256")
    assert served == on_disk


def test_http_is_proxied_without_redirect(host):
    answer = _get(host, "http://127.0.0.1/flags")
    assert answer["path"] == "/flags"
    assert answer["headers"]["X-Forwarded-Proto"] == "http"


def test_https_passes_forwarding_headers(host):
    answer = _get(host, "https://127.0.0.1/flags", "X-Forwarded-For: 203.0.113.7")
    headers = answer["headers"]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"


def test_client_request_id_is_kept(host):
    answer = _get(host, "https://127.0.0.1/", "X-Request-ID: test-id-123")
    assert answer["headers"]["X-Request-ID"] == "test-id-123"


def test_request_id_is_made_when_client_sends_none(host):
    answer = _get(host, "https://127.0.0.1/")
    request_id = answer["headers"]["X-Request-ID"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0


def test_access_log_lines_are_json(host):
    host.check_output("curl -ksS -o /dev/null -H 'X-Request-ID: log-probe-1' -A 'quote\" agent' https://127.0.0.1/log-probe")
    last = host.check_output(f"grep log-probe-1 {ACCESS_LOG} | tail -n 1")
    entry = json.loads(last)
    assert entry["request_id"] == "log-probe-1"
    assert entry["uri"] == "/log-probe"
    assert entry["status"] == 200
    assert entry["http_user_agent"] == 'quote" agent'
    assert entry["scheme"] == "https"


def test_body_over_the_limit_is_refused_with_413(host):
    status = host.check_output(
        "head -c 100000 /dev/zero | curl -ks -o /dev/null -w '%{http_code}' --data-binary @- https://127.0.0.1/upload"
    )
    assert status == "413"


def test_body_under_the_limit_reaches_the_service(host):
    out = host.check_output("head -c 1000 /dev/zero | curl -ksS --data-binary @- https://127.0.0.1/upload")
    assert json.loads(out)["body_bytes"] == 1000


def test_upstream_down_gives_502_and_is_logged(host):
    host.run_test("systemctl stop echo-upstream")
    try:
        status = host.check_output("curl -ks -o /dev/null -w '%{http_code}' -H 'X-Request-ID: down-probe' https://127.0.0.1/")
    finally:
        host.run_test("systemctl start echo-upstream")
    assert status == "502"
    entry = json.loads(host.check_output(f"grep down-probe {ACCESS_LOG} | tail -n 1"))
    assert entry["status"] == 502
    # one try plus reverse_proxy_upstream_retries (2) on connection errors
    assert entry["upstream_addr"].count("127.0.0.1:8000") == 3
