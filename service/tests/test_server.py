"""The service as deployed: gunicorn via `togglemaster serve`, JSON logs, SIGTERM, socket activation."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import psycopg
import pytest
import requests

from support import TOKEN, Service, env_for, togglemaster_exe, wait_http

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_serve_answers_and_logs_one_json_object_per_line(serve, db_url):
    service, base = serve(db_url, API_TOKEN=TOKEN)
    resp = requests.post(base + "/flags", json={"name": "logged"}, headers={**AUTH, "X-Request-ID": "req-42"}, timeout=5)
    assert resp.status_code in (201, 409)
    assert resp.headers["X-Request-ID"] == "req-42"
    requests.get(base + "/flags/logged", timeout=5)
    time.sleep(0.3)
    records = [json.loads(line) for line in service.log_lines()]  # every line is JSON
    assert all({"time", "level", "message"} <= set(r) for r in records)
    access = [r for r in records if r.get("request_id") == "req-42"]
    assert len(access) == 1
    line = access[0]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/flags", resp.status_code)
    assert isinstance(line["duration_ms"], (int, float))
    assert any(r.get("path") == "/flags/logged" and r.get("request_id") for r in records)


def test_no_secret_reaches_the_log(serve, db_url):
    password = psycopg.conninfo.conninfo_to_dict(db_url).get("password")
    service, base = serve(db_url, API_TOKEN=TOKEN, LOG_LEVEL="DEBUG")
    requests.post(base + "/flags", json={"name": "s"}, headers=AUTH, timeout=5)
    requests.post(base + "/flags", json={"name": "s"}, headers={"Authorization": "Bearer wrong-" + TOKEN}, timeout=5)
    time.sleep(0.3)
    text = service.log_path.read_text()
    assert TOKEN not in text
    if password:
        assert password not in text


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
        time.sleep(1.0)
        service.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert service.proc.poll() is None, "gunicorn exited with a request in flight"
        blocker.commit()
    worker.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["resp"].status_code == 200
    assert service.proc.wait(timeout=30) == 0


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

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert first.stop() == 0
        during_gap = answered
        time.sleep(0.5)  # nothing serves now; the kernel queues connections on the socket
        second = _activated(listener, env, tmp_path / "second.log")
        try:
            time.sleep(2.0)
            stop.set()
            for t in threads:
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
    started = time.monotonic()
    service = Service(env, tmp_path / "bad.log")
    assert service.proc.wait(timeout=20) == 2
    assert time.monotonic() - started < 15
    assert "PORT must be an integer" in service.log_path.read_text()
    service.stop()


def test_health_reports_build(serve, db_url):
    _, base = serve(db_url)
    health = requests.get(base + "/health", timeout=5).json()
    version = requests.get(base + "/version", timeout=5).json()
    assert health["status"] == "ok"
    assert (health["version"], health["build"]) == (version["version"], version["build"])
    assert os.environ.get("TOGGLEMASTER_BUILD_ID", version["build"]) == version["build"] or version["build"] == "dev"
