"""Routes: parse, validate, call the store, shape the response.

Every failure is raised as ApiError (or a store error) and turned into JSON in one place,
app.register_error_handlers; routes hold no try/except.
"""
from __future__ import annotations

import hmac
import json
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from togglemaster.store import Store
from togglemaster.version import BUILD_ID, VERSION

bp = Blueprint("api", __name__)

# 1-100 characters of [A-Za-z0-9._-], but not "." or "..": clients and proxies resolve those
# path segments (/flags/.. is /), so such a flag could never be read, switched or deleted.
NAME_RE = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._-]{1,100}")
DESCRIPTION_MAX = 500
LIMIT_MAX = 1000
OFFSET_MAX = 1_000_000
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})

# Messages of the original service, kept verbatim for existing clients.
MSG_NAME_REQUIRED = "O campo 'name' é obrigatório"
MSG_IS_ENABLED_REQUIRED = "O campo 'is_enabled' (booleano) é obrigatório"
MSG_NOT_FOUND = "Flag não encontrada"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _store() -> Store:
    return current_app.extensions["togglemaster.store"]


# --- request parsing -------------------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise ValueError(f"not JSON: {token}")


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError (415, 413, 400)."""
    if not request.is_json:
        raise ApiError(415, "O Content-Type deve ser application/json")
    raw = request.get_data(cache=True)  # 413 from MAX_CONTENT_LENGTH surfaces here
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "JSON inválido no corpo da requisição") from None
    if not isinstance(body, dict):
        raise ApiError(400, "O corpo da requisição deve ser um objeto JSON")
    return body


def _valid_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800"-style escapes
        return False
    return True


def _description(body: dict[str, Any]) -> str | None:
    value = body.get("description")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX or not _valid_text(value):
        raise ApiError(
            400, f"O campo 'description' deve ser texto de até {DESCRIPTION_MAX} caracteres"
        )
    return value


def _query_int(name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"O parâmetro '{name}' deve ser um inteiro entre {lo} e {hi}")
    return int(raw)


def _lookup_name(name: str) -> str | None:
    """A name from the path. Lookups accept any name the table can hold (flags created by
    the original service may predate the name rule); anything else cannot exist."""
    if len(name) > 100 or not _valid_text(name):
        return None
    return name


# --- responses -------------------------------------------------------------------------


# The validators werkzeug's conditional handling reads, as WSGI environ keys.
CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE")


def _conditional(payload: Any) -> Response:
    """JSON with a strong ETag of its body; If-None-Match that matches gives 304."""
    resp = jsonify(payload)
    resp.add_etag()
    resp.headers["Cache-Control"] = "no-cache"
    # werkzeug's conditional handling only matters when the client sent a validator; most
    # polls of a flag do not, and skipping it keeps the hottest route short.
    if any(key in request.environ for key in CONDITIONAL_HEADERS):
        return resp.make_conditional(request)
    return resp


def _message(status: int, text: str, **headers: str) -> Response:
    resp = jsonify({"message": text})
    resp.status_code = status
    resp.headers.update(headers)
    return resp


# --- write protection ------------------------------------------------------------------


@bp.before_request
def _require_token() -> None:
    tokens: tuple[str, ...] = current_app.config["TOGGLEMASTER_API_TOKENS"]
    if not tokens or request.method not in WRITE_METHODS:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    # Every accepted token is compared, in constant time: which one matched takes no longer.
    matches = [hmac.compare_digest(presented, token.encode("utf-8")) for token in tokens]
    ok = scheme.lower() == "bearer" and any(matches)
    if not ok:
        raise ApiError(
            401,
            "Token de autenticação ausente ou inválido",
            {"WWW-Authenticate": 'Bearer realm="togglemaster"'},
        )


# --- routes ----------------------------------------------------------------------------


@bp.get("/health")
def health() -> Response:
    return jsonify({"status": "ok", "version": VERSION, "build": BUILD_ID})


@bp.get("/version")
def version() -> Response:
    return jsonify({"version": VERSION, "build": BUILD_ID})


@bp.get("/ready")
def ready() -> Response | tuple[Response, int, dict[str, str]]:
    if _store().ping():
        # The build lets a deploy gate check readiness and the running release in one request.
        return jsonify({"status": "ready", "version": VERSION, "build": BUILD_ID})
    return jsonify({"status": "unavailable"}), 503, {"Retry-After": current_app.config["TOGGLEMASTER_RETRY_AFTER"]}


@bp.get("/openapi.json")
def openapi() -> Response:
    resp = Response(current_app.config["TOGGLEMASTER_OPENAPI"], mimetype="application/json")
    resp.add_etag()
    return resp.make_conditional(request)


@bp.post("/flags")
def create_flag() -> Response:
    body = _json_object()
    name = body.get("name")
    if name is None or name == "":
        raise ApiError(400, MSG_NAME_REQUIRED)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ApiError(
            400,
            "O campo 'name' deve ter de 1 a 100 caracteres entre A-Z, a-z, 0-9, '.', '_' e '-'"
            " e não pode ser '.' nem '..'",
        )
    is_enabled = body.get("is_enabled", False)
    if not isinstance(is_enabled, bool):
        raise ApiError(400, "O campo 'is_enabled' deve ser booleano")
    _store().create_flag(name, is_enabled, _description(body))
    return _message(201, f"Flag '{name}' criada com sucesso", Location=f"/flags/{name}")


@bp.get("/flags")
def list_flags() -> Response:
    limit = _query_int("limit", None, 1, LIMIT_MAX)
    offset = _query_int("offset", 0, 0, OFFSET_MAX)
    flags = _store().list_flags(limit, offset or 0)
    return _conditional([f.to_json() for f in flags])


@bp.get("/flags/<name>")
def get_flag(name: str) -> Response:
    key = _lookup_name(name)
    flag = _store().get_flag(key) if key is not None else None
    if flag is None:
        raise ApiError(404, MSG_NOT_FOUND)
    return _conditional(flag.to_json())


@bp.put("/flags/<name>")
def update_flag(name: str) -> Response:
    body = _json_object()
    is_enabled = body.get("is_enabled")
    if not isinstance(is_enabled, bool):
        raise ApiError(400, MSG_IS_ENABLED_REQUIRED)
    description = _description(body)
    key = _lookup_name(name)
    flag = (
        _store().update_flag(key, is_enabled, description, "description" in body)
        if key is not None
        else None
    )
    if flag is None:
        raise ApiError(404, MSG_NOT_FOUND)
    return _message(200, f"Flag '{name}' atualizada")


@bp.delete("/flags/<name>")
def delete_flag(name: str) -> Response:
    key = _lookup_name(name)
    if key is None or not _store().delete_flag(key):
        raise ApiError(404, MSG_NOT_FOUND)
    return _message(200, f"Flag '{name}' removida")
