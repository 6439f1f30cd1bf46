"""create_app(config) -> Flask app. Wiring only: config, store, hooks, error shaping."""
from __future__ import annotations

import atexit
import logging
import math
import re
import time
import uuid
from importlib import resources

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from togglemaster import config as config_mod
from togglemaster import log as log_mod
from togglemaster.api import ApiError, bp
from togglemaster.config import Config
from togglemaster.store import DatabaseUnavailable, FlagExists, Store

MAX_BODY_BYTES = 64 * 1024
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

HTTP_MESSAGES = {
    400: "Requisição inválida",
    401: "Token de autenticação ausente ou inválido",
    404: "Recurso não encontrado",
    405: "Método não permitido",
    413: "Corpo da requisição muito grande",
    415: "O Content-Type deve ser application/json",
    500: "Erro interno do servidor",
    503: "Banco de dados indisponível",
}

access_log = logging.getLogger("togglemaster.access")
error_log = logging.getLogger("togglemaster.error")


def create_app(cfg: Config | None = None, *, store: Store | None = None) -> Flask:
    cfg = cfg if cfg is not None else config_mod.load()
    log_mod.setup(cfg.log_level)

    app = Flask("togglemaster")
    # One proxy in front, nginx (roles/reverse_proxy), which sets X-Forwarded-For to the address
    # that connected to it, never to what the client wrote: trust exactly that one hop, so the
    # request log names the client, not 127.0.0.1.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        # The tokens writes accept: none (writes open), or the token and, during a rotation, the previous one.
        TOGGLEMASTER_API_TOKENS=tuple(t for t in (cfg.api_token, cfg.api_token_previous) if t is not None),
        TOGGLEMASTER_OPENAPI=resources.files("togglemaster").joinpath("openapi.json").read_bytes(),
    )
    probe_interval = cfg.db_probe_interval_ms / 1000
    # A client told to retry sooner than the next reconnection attempt would only find 503 again.
    retry_after = max(1, math.ceil(probe_interval))
    app.config["TOGGLEMASTER_RETRY_AFTER"] = str(retry_after)
    if store is None:
        store = Store(cfg.conninfo(), cfg.db_pool_size, float(cfg.db_connect_timeout), probe_interval)
        store.open()
        atexit.register(store.close)
    app.extensions["togglemaster.store"] = store
    app.register_blueprint(bp)
    _register_request_log(app)
    _answer_options_in_json(app)
    _register_error_handlers(app, retry_after=retry_after)
    return app


def _answer_options_in_json(app: Flask) -> None:
    """OPTIONS answers like every other route: JSON naming the allowed methods (and the Allow header)."""
    default = app.make_default_options_response

    def json_options() -> Response:
        allowed = sorted(default().allow)
        resp = jsonify({"allow": allowed})
        resp.headers["Allow"] = ", ".join(allowed)
        return resp

    app.make_default_options_response = json_options  # type: ignore[method-assign]


def _register_request_log(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        resp.headers["X-Request-ID"] = request_id
        started = g.get("started")
        duration = (time.perf_counter() - started) * 1000 if started else 0.0
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            resp.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": resp.status_code,
                "duration_ms": round(duration, 3),
                "remote_addr": request.remote_addr,
            },
        )
        return resp


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    if headers:
        resp.headers.update(headers)
    return resp


def _register_error_handlers(app: Flask, retry_after: int) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    @app.errorhandler(FlagExists)
    def _exists(exc: FlagExists) -> Response:
        return _error(409, f"A flag '{exc.args[0]}' já existe")

    @app.errorhandler(DatabaseUnavailable)
    def _unavailable(exc: DatabaseUnavailable) -> Response:
        error_log.warning("database unavailable: %s", exc, extra={"request_id": g.get("request_id")})
        return _error(503, HTTP_MESSAGES[503], {"Retry-After": str(retry_after)})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _error(status, HTTP_MESSAGES.get(status, exc.name), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        error_log.error(
            "unhandled error in %s %s",
            request.method,
            request.path,
            exc_info=exc,
            extra={"request_id": g.get("request_id")},
        )
        return _error(500, HTTP_MESSAGES[500])
