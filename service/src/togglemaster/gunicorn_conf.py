"""gunicorn settings, all derived from the environment (loaded with `-c python:togglemaster.gunicorn_conf`).

Socket activation: when systemd passes LISTEN_FDS/LISTEN_PID, gunicorn serves on the
inherited sockets and ignores `bind`; `togglemaster serve` execs gunicorn so the PID that
systemd named is gunicorn's.
"""
import json as _json
import signal as _signal

from gunicorn import util as _gunicorn_util

from togglemaster import config as _config
from togglemaster import log as _log

_cfg = _config.load()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


wsgi_app = "togglemaster.wsgi:app"
bind = [_bind(_cfg.host, _cfg.port)]
workers = _cfg.web_concurrency
# One thread per worker (the default) runs sync workers: one request at a time, one connection
# each, no keep-alive; the kernel hands each new connection to a free worker, so the load stays
# even across workers and the latency tail short. nginx in front buffers slow clients, as
# gunicorn wants for sync workers. WEB_THREADS > 1 runs gthread workers instead, for a database
# so far away that a worker mostly waits on it.
worker_class = "sync" if _cfg.web_threads == 1 else "gthread"
threads = _cfg.web_threads
# Requests finish on SIGTERM: gunicorn stops accepting, lets workers complete in-flight
# requests for up to graceful_timeout seconds, then exits.
graceful_timeout = 30
timeout = 30
keepalive = 5
backlog = 2048
# nginx in front (roles/reverse_proxy, the only client: the socket listens on 127.0.0.1) refuses
# over-long requests with JSON errors, so gunicorn's own limits must never come first. nginx
# passes a request line or a header line only when it fits one large_client_header_buffers
# buffer (8k by default) and the headers only when they fit all of them (4 x 8k by default,
# at most 64k as the role allows: under 16,400 lines). gunicorn caps a request-line limit at
# 8190, so 0: none of its own; 32768 fields is gunicorn's maximum; a field may be 1 MiB.
limit_request_line = 0
limit_request_fields = 32768
limit_request_field_size = 1024 * 1024
# The app writes one JSON access line per request itself; gunicorn's access log stays off.
accesslog = None
logconfig_dict = _log.gunicorn_logconfig(_cfg.log_level)
proc_name = "togglemaster"
# No preload: each worker builds the app (and its connection pool) after fork.
preload_app = False
# gunicorn >= 24 opens a control socket under $HOME by default; the service needs none
# (and a hardened unit may have no writable home).
control_socket_disable = True


# A stop must reach a worker however early it comes. Until gunicorn installs a new worker's
# own handlers (Worker.init_signals), the forked worker still runs the master's, which only
# queue the signal in the worker's copy of the master's queue: a SIGTERM the master passes on
# in that moment (a restart just after a worker was spawned) is lost, and the master waits
# graceful_timeout before it SIGKILLs the worker. So the worker takes over SIGTERM at once,
# and honours a stop already queued. Its handler only clears `alive` (the worker kinds' own
# handlers need state that init_process has not built yet); a worker that is not alive
# finishes booting and exits without serving.
_STOPS = {_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT}


def post_fork(server, worker) -> None:
    def stop(_signum, _frame) -> None:
        worker.alive = False

    _signal.signal(_signal.SIGTERM, stop)
    queued = server.SIG_QUEUE  # a queue.SimpleQueue since gunicorn 24
    pending = []
    while not queued.empty():
        pending.append(queued.get_nowait())
    if _STOPS.intersection(pending):
        worker.alive = False


# What gunicorn refuses before the app sees it (what nginx lets through but gunicorn does not
# take: a control character in a header value, a byte over 0x7e in the path, a method of under
# three letters) it answers with an HTML page from util.write_error. Answer JSON in the service's
# words instead, like every other error. The table follows app.HTTP_MESSAGES (not imported: it
# would load Flask into the master process).
_PROTOCOL_ERRORS = {
    400: "Requisição inválida",
    403: "Acesso negado",
    414: "URI da requisição muito longa",
    417: "Expectativa não suportada",
    431: "Cabeçalhos da requisição muito grandes",
    500: "Erro interno do servidor",
    501: "Transfer-Encoding não suportado",
}


def _write_json_error(sock, status_int: int, reason: str, _detail: str) -> None:
    # gunicorn's detail text is left out: it can quote the request back
    fallback = "Requisição inválida" if status_int < 500 else "Erro interno do servidor"
    body = _json.dumps({"error": _PROTOCOL_ERRORS.get(status_int, fallback)}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    _gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


_gunicorn_util.write_error = _write_json_error
