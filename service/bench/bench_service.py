#!/usr/bin/env python3
"""Load benchmark: `togglemaster serve` (gunicorn) against a real PostgreSQL with 100 flags,
driven over loopback by wrk. Prints req/s and p50/p99 latency per endpoint.

    python service/bench/bench_service.py [--duration 10] [--connections 32] [--threads 2]

PostgreSQL: BENCH_DATABASE_URL if set (its database gets the flags table and 100 flags
named bench-000..bench-099), otherwise a throwaway cluster started like the tests do.
Service settings (WEB_CONCURRENCY, WEB_THREADS, DB_POOL_SIZE, LOG_LEVEL) come from the
environment as in production; unset ones keep the service defaults. Access logs are
written to a file, as a deployment would write them to the journal.

This prints figures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import pgserver  # noqa: E402  (the tests' throwaway PostgreSQL helper)

FLAGS = 100


def togglemaster_exe() -> str:
    exe = Path(sys.executable).with_name("togglemaster")
    return str(exe) if exe.exists() else (shutil.which("togglemaster") or "togglemaster")


def seed(url: str, env: dict[str, str]) -> None:
    subprocess.run([togglemaster_exe(), "migrate"], env=env, check=True, capture_output=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM flags WHERE name LIKE 'bench-%'")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO flags (name, is_enabled, description) VALUES (%s, %s, %s)",
                [(f"bench-{i:03d}", i % 2 == 0, f"benchmark flag {i}") for i in range(FLAGS)],
            )
        conn.execute("VACUUM ANALYZE flags")


def wait_ready(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit("the service did not become ready")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, duration: int, connections: int, threads: int, script: str | None, env: dict[str, str]) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(HERE / script)]
    out = subprocess.run(cmd + [url], env=env, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per endpoint (default 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--only", default="health,get_flag,list,put", help="comma-separated subset of: health,get_flag,list,put")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    server = None
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        server = pgserver.PgServer(durable=True)
        server.start()
        url = server.url()
    workdir = Path(tempfile.mkdtemp(prefix="togglemaster-bench-"))
    token = secrets.token_hex(20)
    port = pgserver.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env.update(DATABASE_URL=url, HOST="127.0.0.1", PORT=str(port), API_TOKEN=token, BENCH_API_TOKEN=token)
    service = None
    try:
        seed(url, env)
        log = open(workdir / "service.log", "wb")
        service = subprocess.Popen([togglemaster_exe(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        wanted = set(args.only.split(","))
        cases = [
            (label, path, script)
            for key, label, path, script in [
                ("health", "GET /health (no database)", "/health", "same_path.lua"),
                ("get_flag", "GET /flags/<name>", "/flags/bench-000", "get_flag.lua"),
                ("list", "GET /flags (100 flags)", "/flags", "same_path.lua"),
                ("put", "PUT /flags/<name>", "/flags/bench-000", "put_flag.lua"),
            ]
            if key in wanted
        ]
        cpus = os.cpu_count()
        workers = env.get("WEB_CONCURRENCY", "default")
        print(f"togglemaster benchmark: {cpus} CPUs, wrk -t{args.threads} -c{args.connections} -d{args.duration}s,"
              f" WEB_CONCURRENCY={workers}, WEB_THREADS={env.get('WEB_THREADS', 'default')}, {FLAGS} flags")
        print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")
        print(f"{'endpoint':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  notes")
        results = {}
        for label, path, script in cases:
            if args.warmup:
                wrk(base + path, args.warmup, args.connections, args.threads, script, env)
            r = wrk(base + path, args.duration, args.connections, args.threads, script, env)
            results[label] = r
            notes = []
            if r["non2xx"]:
                notes.append(f"{r['non2xx']} non-2xx")
            if r["socket_errors"]:
                notes.append(f"socket errors: {r['socket_errors']}")
            print(f"{label:<28} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}  {'; '.join(notes)}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if {"health", "get_flag"} <= wanted:
            ceiling = results["GET /health (no database)"]["rps"]
            get_flag = results["GET /flags/<name>"]
            print(f"GET /flags/<name> = {100 * get_flag['rps'] / ceiling:.1f}% of the /health ceiling"
                  f" (target >= 60%), p99 {get_flag['p99']:.2f} ms (target <= 15 ms)")
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        if server is not None:
            server.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
