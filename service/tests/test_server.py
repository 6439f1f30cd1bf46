"""The service as deployed: gunicorn via `togglemaster serve`, JSON logs, SIGTERM, socket activation."""
from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
import uuid

import pgserver
import psycopg
import pytest
import requests
from psycopg import sql

from support import TOKEN, Service, env_for, run_cli, togglemaster_exe, url_for_params, wait_http, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def logged(*request_ids: str):
    """A wait_for_log condition: a request line for each of these request ids."""
    return lambda records: set(request_ids) <= {r.get("request_id") for r in records}


def test_serve_answers_and_logs_one_json_object_per_line(serve, db_url):
    service, base = serve(db_url, API_TOKEN=TOKEN)
    resp = requests.post(base + "/flags", json={"name": "logged"}, headers={**AUTH, "X-Request-ID": "req-42"}, timeout=5)
    assert resp.status_code in (201, 409)
    assert resp.headers["X-Request-ID"] == "req-42"
    requests.get(base + "/flags/logged", headers={"X-Request-ID": "req-43"}, timeout=5)
    records = service.wait_for_log(logged("req-42", "req-43"))  # every line parsed as JSON
    assert all({"time", "level", "message"} <= set(r) for r in records)
    access = [r for r in records if r.get("request_id") == "req-42"]
    assert len(access) == 1
    line = access[0]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/flags", resp.status_code)
    assert isinstance(line["duration_ms"], (int, float))
    assert any(r.get("path") == "/flags/logged" and r.get("request_id") == "req-43" for r in records)


@pytest.fixture
def own_role_db(pg, make_database):
    """A migrated database owned by a role of its own with a known password; its URL."""
    role, password = f"tm_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    url = make_database()
    params = psycopg.conninfo.conninfo_to_dict(url)
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(params["dbname"]), sql.Identifier(role)))
    own_url = url_for_params(dict(params, user=role, password=password))
    assert run_cli("migrate", env=env_for(own_url)).returncode == 0
    yield own_url
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(params["dbname"])))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_requests_are_logged_without_secrets_query_strings_or_bodies(own_role_db, serve):
    password = psycopg.conninfo.conninfo_to_dict(own_role_db)["password"]
    query, body, wrong_token = (f"{kind}-marker-{uuid.uuid4().hex}" for kind in ("query", "body", "wrong-token"))
    service, base = serve(own_role_db, API_TOKEN=TOKEN, LOG_LEVEL="DEBUG")

    def send(request_id: str, method: str, path: str, auth: str = TOKEN, **kwargs) -> requests.Response:
        headers = {"X-Request-ID": request_id, "Authorization": f"Bearer {auth}", **kwargs.pop("headers", {})}
        return requests.request(method, base + path, headers=headers, timeout=10, **kwargs)

    calls = [  # request id, method, path with query, further arguments, expected status
        ("q-list", "GET", f"/flags?marker={query}", {}, 200),
        ("b-create", "POST", f"/flags?marker={query}", {"json": {"name": "quiet", "description": body}}, 201),
        ("b-switch", "PUT", "/flags/quiet", {"json": {"is_enabled": True, "description": body}}, 200),
        ("b-malformed", "POST", "/flags", {"data": '{"name": "' + body, "headers": {"Content-Type": "application/json"}}, 400),
        ("t-wrong", "POST", "/flags", {"auth": wrong_token, "json": {"name": body}}, 401),
        ("q-missing", "GET", f"/flags/absent?{query}=1", {}, 404),
    ]
    for rid, method, target, kwargs, status in calls:
        resp = send(rid, method, target, **kwargs)
        assert resp.status_code == status, (rid, resp.status_code, resp.text)

    records = service.wait_for_log(logged(*(rid for rid, *_ in calls)))
    lines = {r["request_id"]: r for r in records if "request_id" in r}
    for rid, method, target, _, status in calls:
        # One request line each, with the path but not the query string.
        assert (lines[rid]["method"], lines[rid]["path"], lines[rid]["status"]) == (method, target.split("?")[0], status)
    text = service.log_path.read_text()
    for secret in (TOKEN, password, wrong_token, query, body):
        assert secret not in text, secret


# One thread per worker runs gunicorn's sync workers (the default), more run gthread workers.
WORKER_KINDS = pytest.mark.parametrize("threads", ["1", "4"], ids=["sync", "gthread"])


@WORKER_KINDS
def test_sigterm_lets_in_flight_requests_finish(serve, db_url, threads):
    service, base = serve(db_url, API_TOKEN=TOKEN, WEB_THREADS=threads)
    assert f'"Using worker: {"sync" if threads == "1" else "gthread"}"' in service.log_path.read_text()
    requests.post(base + "/flags", json={"name": "slow"}, headers=AUTH, timeout=5)
    outcome: dict[str, object] = {}
    with psycopg.connect(db_url) as blocker:  # holds the row lock: the PUT below waits on it
        blocker.execute("SELECT 1 FROM flags WHERE name = 'slow' FOR UPDATE")

        def put() -> None:
            try:
                outcome["resp"] = requests.put(base + "/flags/slow", json={"is_enabled": True}, headers=AUTH, timeout=30)
            except requests.RequestException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=put)
        worker.start()
        wait_until(lambda: waiting_on_a_lock(db_url), 20, "the PUT never reached the locked row")
        service.proc.send_signal(signal.SIGTERM)
        service.wait_for_log(lambda records: any(r["message"] == "Handling signal: term" for r in records))
        # gunicorn has acted on the signal; one that stops at once would be gone within this second.
        time.sleep(1.0)
        assert service.proc.poll() is None, "gunicorn exited with a request in flight"
        blocker.commit()
    worker.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["resp"].status_code == 200
    assert service.proc.wait(timeout=30) == 0


def waiting_on_a_lock(db_url: str) -> bool:
    """Whether a service connection is blocked on a lock (the row the test holds)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'togglemaster'"
            " AND datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0] > 0


def _activated(listener: socket.socket, env: dict[str, str], log_path) -> Service:
    """Start the service the way systemd does: the socket as fd 3, LISTEN_FDS=1, LISTEN_PID=pid."""
    fd = listener.fileno()
    script = f'exec 3<&{fd} {fd}<&-; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" serve'
    return Service(env, log_path, popen_kwargs={"pass_fds": (fd,)}, argv=["/bin/bash", "-c", script, togglemaster_exe()])


@WORKER_KINDS
def test_socket_activation_restart_refuses_no_connection(db_url, tmp_path, threads):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    # PORT points elsewhere on purpose: under socket activation the inherited socket wins.
    env = env_for(db_url, HOST="127.0.0.1", PORT="1", WEB_CONCURRENCY="2", WEB_THREADS=threads)
    first = _activated(listener, env, tmp_path / "first.log")
    try:
        wait_http(base + "/health")
        failures: list[str] = []
        answered = 0
        stop = threading.Event()

        def hammer() -> None:
            nonlocal answered
            while not stop.is_set():
                try:
                    resp = requests.get(base + "/health", timeout=20)
                    if resp.status_code == 200:
                        answered += 1
                    else:
                        failures.append(str(resp.status_code))
                except requests.RequestException as exc:
                    failures.append(repr(exc))

        clients = [threading.Thread(target=hammer) for _ in range(4)]
        for t in clients:
            t.start()
        wait_until(lambda: answered >= 20 or bool(failures), 20, "the first server did not answer the clients")
        assert first.stop() == 0
        during_gap = answered
        # Nothing serves now: the kernel queues the clients' connections on the socket. The
        # gap is the point of the test; a longer one (a loaded machine) only makes it harder.
        time.sleep(0.5)
        second = _activated(listener, env, tmp_path / "second.log")
        try:
            wait_until(lambda: answered >= during_gap + 20 or bool(failures), 30,
                       "the second server did not answer the queued and new connections")
            stop.set()
            for t in clients:
                t.join(timeout=30)
            assert failures == []
            assert answered > during_gap
        finally:
            second.stop()
    finally:
        first.stop()
        listener.close()
    assert any('"Listening at' in line or "Listening at" in line for line in first.log_lines())


def test_serve_fails_fast_on_invalid_configuration(tmp_path):
    env = env_for("postgresql://u@127.0.0.1/db", PORT="not-a-port")
    service = Service(env, tmp_path / "bad.log")
    assert service.proc.wait(timeout=20) == 2
    text = service.log_path.read_text()
    assert "PORT must be an integer" in text
    assert "Starting gunicorn" not in text  # refused before gunicorn was started
    service.stop()


def test_served_release_reports_the_build_id_baked_into_its_wheel(serve, db_url, release):
    _, base = serve(db_url, release=release)
    identity = {"version": release.version, "build": release.build}
    assert requests.get(base + "/health", timeout=5).json() == {"status": "ok", **identity}
    assert requests.get(base + "/version", timeout=5).json() == identity
    assert requests.get(base + "/ready", timeout=5).json() == {"status": "ready", **identity}


def raw_request(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library tidies them) and read the whole answer."""
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nConnection: close\r\n\r\n", 400),
        (b"GET /health HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        (b"GET /flags/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(150))
         + b"Connection: close\r\n\r\n", 200),
    ],
    ids=["control-character-in-a-header", "unknown-http-version", "5kB-url-reaches-the-app", "150-headers-reach-the-app"],
)
def test_what_gunicorn_answers_itself_is_json_and_its_limits_leave_the_edge_to_nginx(serve, db_url, request_bytes, status):
    _, base = serve(db_url, API_TOKEN=TOKEN)
    got, headers, body = raw_request(base, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    if status >= 400:
        assert set(json.loads(body)) == {"error"}


# gunicorn with the service's settings, but a worker that stalls just after fork, before
# gunicorn installs the worker's own signal handlers (a busy machine can deschedule it there):
# before the service's post_fork hook runs (the master's handler queues the stop) or after it.
SLOW_FORK_CONF = """
import time
from togglemaster.gunicorn_conf import *  # noqa: F401,F403
from togglemaster import gunicorn_conf as _service


def post_fork(server, worker):
    time.sleep({before})
    _service.post_fork(server, worker)
    time.sleep({after})
"""


@WORKER_KINDS
@pytest.mark.parametrize(("before", "after"), [(2, 0), (0, 2)], ids=["stalled-before-the-hook", "stalled-after-the-hook"])
def test_a_stop_sent_while_a_worker_is_being_forked_is_not_lost(db_url, tmp_path, before, after, threads):
    conf = tmp_path / "slow_fork_conf.py"
    conf.write_text(SLOW_FORK_CONF.format(before=before, after=after))
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf)]
    env = env_for(db_url, HOST="127.0.0.1", PORT=str(pgserver.free_port()), WEB_CONCURRENCY="1", WEB_THREADS=threads)
    service = Service(env, tmp_path / "fork.log", argv=argv)
    service.wait_for_log(lambda records: any(r["message"].startswith("Booting worker") for r in records))
    service.proc.send_signal(signal.SIGTERM)  # the master passes it on to the stalled worker
    # Lost, the master would wait graceful_timeout (30 s) and then SIGKILL the worker.
    assert service.stop(timeout=25) == 0
    assert not [r for r in service.log_records() if "SIGKILL" in r["message"]]
