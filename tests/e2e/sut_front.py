"""The HTTP front of the small test SUTs (sut_app.py, sut_api_app.py): stdlib only, as a user's app would be.

POST /<kind> {"email"} → 202 {"id"} and a job (rcpt, kind, seq) on `jobs`; `GET /healthz` → 200;
`GET /metrics` → `sut_queue_depth N` (jobs taken but not yet finished). SIGTERM stops the workers and the
server. A worker calls `finished()` when it is done with a job.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

jobs: queue.Queue[tuple[str, str, int]] = queue.Queue()
stopping = threading.Event()
_lock = threading.Lock()
_pending = 0
_seq = 0


def finished() -> None:
    global _pending
    with _lock:
        _pending -= 1


def next_job() -> tuple[str, str, int] | None:
    """The next job, or None after a short wait (so a worker sees `stopping`)."""
    try:
        return jobs.get(timeout=0.2)
    except queue.Empty:
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b'{"status": "ok"}')
        elif self.path == "/metrics":
            self._reply(200, f"sut_queue_depth {_pending}\n".encode(), "text/plain")
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        global _pending, _seq
        length = int(self.headers.get("Content-Length") or 0)
        try:
            rcpt = json.loads(self.rfile.read(length))["email"]
        except (ValueError, KeyError, TypeError):
            self._reply(400, b'{"error": "body must be {\\"email\\": ...}"}')
            return
        with _lock:
            _seq += 1
            seq = _seq
            _pending += 1
        jobs.put((rcpt, self.path.strip("/") or "otp", seq))
        self._reply(202, json.dumps({"id": seq}).encode())

    def log_message(self, *args: object) -> None:  # quiet: one line per send attempt is the useful log
        pass


def serve(port: int, workers: list[Callable[[], None]], banner: str) -> int:
    """Start the workers and serve on 127.0.0.1:port until SIGTERM."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    for work in workers:
        threading.Thread(target=work, daemon=True).start()

    def stop(*_: object) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"sut: listening on http://127.0.0.1:{port} {banner}", flush=True)
    server.serve_forever(poll_interval=0.1)
    return 0
