"""One JSON object per line on stdout, for the service and for gunicorn alike."""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Fields a request log line may carry (set through `extra=`).
REQUEST_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "remote_addr")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in REQUEST_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: tracebacks may quote SQL or connection details.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def handler() -> logging.Handler:
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(JsonFormatter())
    return out


def setup(level: str) -> None:
    """Route every logger through one JSON handler on stdout."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler())
    root.setLevel(level)
    # psycopg_pool logs each reconnection attempt at INFO; keep warnings and above.
    logging.getLogger("psycopg.pool").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """logging.config dict for gunicorn's own error log (its access log is off)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "togglemaster.log.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
