"""Stand-in upstream for the reverse proxy test: answers every request with its headers as JSON.

Like the service, it answers any method, echoes the X-Request-ID it receives, and answers its own
errors in JSON: GET /status/<code> answers <code> with {"error": "upstream <code>"}.
"""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUS_PATH = re.compile(r"/status/([1-5][0-9][0-9])")


class EchoHandler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        wanted = STATUS_PATH.fullmatch(self.path)
        if wanted:
            status = int(wanted.group(1))
            payload = {"error": f"upstream {status}"}
        else:
            status = 200
            payload = {
                "method": self.command,
                "path": self.path,
                "body_bytes": len(body),
                "client": self.client_address[0],
                "headers": dict(self.headers),
            }
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if "X-Request-ID" in self.headers:
            self.send_header("X-Request-ID", self.headers["X-Request-ID"])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), EchoHandler).serve_forever()
