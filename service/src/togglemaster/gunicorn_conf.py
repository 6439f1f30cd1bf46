"""gunicorn settings, all derived from the environment (loaded with `-c python:togglemaster.gunicorn_conf`).

Socket activation: when systemd passes LISTEN_FDS/LISTEN_PID, gunicorn serves on the
inherited sockets and ignores `bind`; `togglemaster serve` execs gunicorn so the PID that
systemd named is gunicorn's.
"""
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
# The app writes one JSON access line per request itself; gunicorn's access log stays off.
accesslog = None
logconfig_dict = _log.gunicorn_logconfig(_cfg.log_level)
proc_name = "togglemaster"
# No preload: each worker builds the app (and its connection pool) after fork.
preload_app = False
# gunicorn >= 24 opens a control socket under $HOME by default; the service needs none
# (and a hardened unit may have no writable home).
control_socket_disable = True
