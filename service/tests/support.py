"""Helpers shared by the tests and the fixtures: the CLI, the server process, URLs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

TOKEN = "test-token-0123456789abcdef"
# The token a rotation replaces (API_TOKEN_PREVIOUS).
PREVIOUS_TOKEN = "previous-token-0123456789abcdef"


def togglemaster_exe() -> str:
    exe = Path(sys.executable).with_name("togglemaster")
    if exe.exists():
        return str(exe)
    found = shutil.which("togglemaster")
    if not found:
        raise RuntimeError("the togglemaster console script is not installed")
    return found


def url_for_params(params: dict) -> str:
    auth = quote(str(params.get("user", "postgres")), safe="")
    if params.get("password"):
        auth += ":" + quote(str(params["password"]), safe="")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    query = f"?sslmode={params['sslmode']}" if params.get("sslmode") else ""
    return f"postgresql://{auth}@{host}:{port}/{params['dbname']}{query}"


def env_for(url: str, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: only what the service reads, plus PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "API_TOKEN"))}
    env.update(DATABASE_URL=url, LOG_LEVEL="INFO", DB_CONNECT_TIMEOUT="2")
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [togglemaster_exe(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class Service:
    """`togglemaster serve` as a real gunicorn process on loopback; stdout goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, popen_kwargs: dict | None = None, argv: list[str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv or [togglemaster_exe(), "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **(popen_kwargs or {}),
        )

    def log_lines(self) -> list[str]:
        """Every complete line written so far (a line still being written is left out)."""
        return self.log_path.read_text(encoding="utf-8").split("\n")[:-1]

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log_lines()]

    def wait_for_log(self, found: Callable[[list[dict]], bool], timeout: float = 20.0) -> list[dict]:
        """The log records once found(records) holds; fails after timeout seconds."""
        records: list[dict] = []

        def check() -> bool:
            nonlocal records
            records = self.log_records()
            return found(records)

        wait_until(check, timeout, f"the log of {self.log_path.name} never showed what was expected")
        return records

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code; fails naming the last log lines if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            tail = "\n".join(self.log_lines()[-15:])
            raise AssertionError(f"{self.proc.args} did not exit within {timeout} s of SIGTERM; its log ends:\n{tail}") from None
        finally:
            self._log.close()


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll condition until it holds; AssertionError with message after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout} s)")
        time.sleep(0.02)


def wait_http(url: str, timeout: float = 20.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
