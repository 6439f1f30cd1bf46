"""Environment -> a frozen, validated Config. Fails fast with one clear message.

No secret ever appears in a message or in repr(): the password and the API token are
kept out of both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote

import psycopg.conninfo

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_POOL_SIZE = 100
MAX_WORKERS = 16
MAX_THREADS = 64


class ConfigError(ValueError):
    """Invalid or missing configuration; str() is one line, safe to print."""


@dataclass(frozen=True)
class Config:
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str = field(repr=False)
    db_sslmode: str
    db_extra: tuple[tuple[str, str], ...] = field(repr=False)
    db_connect_timeout: int
    db_pool_size: int
    db_probe_interval_ms: int
    migration_lock_timeout: int
    host: str
    port: int
    log_level: str
    api_token: str | None = field(repr=False)
    api_token_previous: str | None = field(repr=False)
    web_concurrency: int
    web_threads: int

    def conninfo(self) -> str:
        """libpq connection string for psycopg (contains the password: never log it)."""
        params: dict[str, object] = dict(self.db_extra)
        params.update(
            host=self.db_host,
            port=self.db_port,
            dbname=self.db_name,
            user=self.db_user,
            sslmode=self.db_sslmode,
            connect_timeout=self.db_connect_timeout,
            application_name="togglemaster",
            # A dead peer must not hang a request: give up on unacknowledged data quickly.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=2,
            tcp_user_timeout=self.db_connect_timeout * 1000 + 2000,
        )
        if self.db_password:
            params["password"] = self.db_password
        return psycopg.conninfo.make_conninfo("", **params)

    def migration_url(self) -> str:
        """URL for yoyo's psycopg 3 backend (contains the password: never log it)."""
        auth = quote(self.db_user, safe="")
        if self.db_password:
            auth += ":" + quote(self.db_password, safe="")
        host = self.db_host
        if host.startswith("/"):
            # Unix socket directory: yoyo passes query parameters through to libpq.
            netloc = f"{auth}@"
            query = f"?host={quote(host, safe='')}&port={self.db_port}"
        else:
            netloc = f"{auth}@{quote(host, safe='')}:{self.db_port}"
            query = "?"
        sep = "" if query.endswith("?") else "&"
        query += f"{sep}sslmode={self.db_sslmode}&connect_timeout={self.db_connect_timeout}"
        return f"postgresql+psycopg://{netloc}/{quote(self.db_name, safe='')}{query}"

    def describe_db(self) -> str:
        """Where the database is, without credentials: safe for logs and messages."""
        return f"{self.db_user}@{self.db_host}:{self.db_port}/{self.db_name} (sslmode={self.db_sslmode})"


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer between {lo} and {hi}, got {value}")
    return value


def _database(env: Mapping[str, str]) -> dict[str, object]:
    url = env.get("DATABASE_URL", "").strip()
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")
        try:
            parts = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            raise ConfigError("DATABASE_URL is not a valid PostgreSQL URL") from None
        parts = {k: str(v) for k, v in parts.items()}
        host = parts.pop("host", "")
        port = parts.pop("port", "") or env.get("DB_PORT", "")
        name = parts.pop("dbname", "")
        user = parts.pop("user", "")
        password = parts.pop("password", "")
        sslmode = parts.pop("sslmode", "") or env.get("DB_SSLMODE", "")
        for key in ("connect_timeout", "application_name"):
            parts.pop(key, None)
        source = "DATABASE_URL"
        extra = tuple(sorted(parts.items()))
    else:
        host = env.get("DB_HOST", "").strip()
        port = env.get("DB_PORT", "")
        name = env.get("DB_NAME", "").strip()
        user = env.get("DB_USER", "").strip()
        password = env.get("DB_PASSWORD", "")
        sslmode = env.get("DB_SSLMODE", "")
        source = "DB_*"
        extra = ()
        missing = [k for k, v in (("DB_HOST", host), ("DB_NAME", name), ("DB_USER", user)) if not v]
        if missing:
            raise ConfigError(
                "database not configured: set DATABASE_URL or DB_HOST, DB_NAME and DB_USER"
                f" (missing: {', '.join(missing)})"
            )
    if not host or not name or not user:
        raise ConfigError(f"{source} must name a host, a database and a user")
    sslmode = (sslmode or "prefer").strip()
    if sslmode not in SSLMODES:
        raise ConfigError(f"DB_SSLMODE must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    port_value = _int({"DB_PORT": port}, "DB_PORT", 5432, 1, 65535)
    return dict(
        db_host=host,
        db_port=port_value,
        db_name=name,
        db_user=user,
        db_password=password,
        db_sslmode=sslmode,
        db_extra=extra,
    )


def default_workers() -> int:
    return min(2 * (os.cpu_count() or 1) + 1, 9)


def _token(env: Mapping[str, str], name: str) -> str | None:
    """A bearer token variable: unset or empty means none; otherwise 16 characters or more."""
    token = env.get(name, "").strip()
    if token and len(token) < 16:
        raise ConfigError(f"{name} is set but shorter than 16 characters")
    return token or None


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError with one clear line."""
    env = os.environ if env is None else env
    db = _database(env)
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    token = _token(env, "API_TOKEN")
    # During a rotation (playbooks/rotate.yml) the token being replaced is accepted too.
    previous = _token(env, "API_TOKEN_PREVIOUS")
    if previous is not None and token is None:
        raise ConfigError("API_TOKEN_PREVIOUS is set without API_TOKEN")
    host = env.get("HOST", "0.0.0.0").strip() or "0.0.0.0"
    threads = _int(env, "WEB_THREADS", 1, 1, MAX_THREADS)
    return Config(
        **db,  # type: ignore[arg-type]
        db_connect_timeout=_int(env, "DB_CONNECT_TIMEOUT", 3, 1, 60),
        db_pool_size=_int(env, "DB_POOL_SIZE", threads, 1, MAX_POOL_SIZE),
        db_probe_interval_ms=_int(env, "DB_PROBE_INTERVAL_MS", 500, 100, 10_000),
        migration_lock_timeout=_int(env, "MIGRATION_LOCK_TIMEOUT", 120, 1, 3600),
        host=host,
        port=_int(env, "PORT", 8000, 1, 65535),
        log_level=log_level,
        api_token=token,
        api_token_previous=previous,
        web_concurrency=_int(env, "WEB_CONCURRENCY", default_workers(), 1, MAX_WORKERS),
        web_threads=threads,
    )
