"""A scripted SMTP receiver and status API for the mailer's tests (real TCP), and the mailer-process fixture.

The receiver is a small asyncio SMTP server (not aiosmtpd: it must close after 421 and drop the
connection after the final dot without a reply, which aiosmtpd has no hook for). A test gives it a
`decide(stage, rcpt, n)` function: `n` counts the transactions for that recipient (1 = first try),
(attributed at MAIL FROM when the sender is VERP-encoded, else at RCPT TO),
and the return value is a reply line for that stage, `LOSE_ACK` at DOT, or None for the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
LOSE_ACK = "LOSE_ACK"
Decide = Callable[[str, str, int], str | None]


@dataclass(frozen=True)
class Txn:
    """One ended SMTP transaction: `result` is `accepted`, `lost` (stored, no 250 sent) or the refusing reply code."""

    t: float
    server: str
    rcpt: str
    message_id: str | None
    result: str
    stage: str


class ScriptedSMTP:
    """Runs on its own event loop thread; `port` is bound on 127.0.0.1:0."""

    def __init__(self, name: str, decide: Decide | None = None) -> None:
        self.name = name
        self.decide: Decide = decide or (lambda stage, rcpt, n: None)
        self.txns: list[Txn] = []
        self.lock = threading.Lock()
        self._tries: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def accepted(self) -> list[Txn]:
        with self.lock:
            return [t for t in self.txns if t.result in ("accepted", "lost")]

    def snapshot(self) -> list[Txn]:
        with self.lock:
            return list(self.txns)

    def _try(self, rcpt: str) -> int:
        with self.lock:
            self._tries[rcpt] += 1
            return self._tries[rcpt]

    def _end(self, rcpt: str, message_id: str | None, result: str, stage: str) -> None:
        with self.lock:
            self.txns.append(Txn(time.monotonic(), self.name, rcpt, message_id, result, stage))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> bool:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()
            return not line.startswith("421")  # RFC 5321 §3.8: the server closes after 421

        rcpt, n = "", 0
        try:
            if not await reply("220 scripted.drill.test ESMTP"):
                return
            while line := (await reader.readline()).decode("utf-8", "replace").strip():
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    await reply("250 scripted.drill.test")
                elif verb == "MAIL":
                    m = re.search(r"<bounce\+(.*)=([^=@]*)@", line)
                    rcpt = f"{m[1]}@{m[2]}" if m else ""
                    n = self._try(rcpt) if rcpt else 0
                    decided = self.decide("MAIL", rcpt, n) if rcpt else None
                    if decided:
                        self._end(rcpt, None, decided.split()[0], "MAIL")
                    if not await reply(decided or "250 2.1.0 OK"):
                        return
                elif verb == "RCPT":
                    if not n:  # no VERP sender: the transaction is attributed at RCPT TO
                        m = re.search(r"<([^>]*)>", line)
                        rcpt = m[1] if m else ""
                        n = self._try(rcpt)
                    decided = self.decide("RCPT", rcpt, n)
                    if decided:
                        self._end(rcpt, None, decided.split()[0], "RCPT")
                    if not await reply(decided or "250 2.1.5 OK"):
                        return
                elif verb == "DATA":
                    await reply("354 go ahead")
                    data = b""
                    while (chunk := await reader.readline()) != b".\r\n":
                        if not chunk:
                            return  # the client went away mid-message: an incomplete message is never accepted
                        data += chunk
                    m = re.search(rb"^Message-ID: *(\S+)", data, re.M | re.I)
                    message_id = m[1].decode() if m else None
                    decided = self.decide("DOT", rcpt, n)
                    if decided == LOSE_ACK:
                        self._end(rcpt, message_id, "lost", "DOT")
                        return  # stored, then the connection drops before the 250
                    self._end(rcpt, message_id, decided.split()[0] if decided else "accepted", "DOT")
                    n = 0
                    if not await reply(decided or "250 2.0.0 queued"):
                        return
                elif verb == "QUIT":
                    await reply("221 bye")
                    return
                elif verb == "RSET":
                    n = 0
                    await reply("250 OK")
                else:
                    await reply("250 OK" if verb == "NOOP" else "502 5.5.2 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class StatusAPI:
    """`GET /mtas/{name}/messages/{message_id}` → 200/404 from the receivers' accepted (or lost-ack) messages."""

    def __init__(self, servers: list[ScriptedSMTP]) -> None:
        by_name = {s.name: s for s in servers}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                m = re.fullmatch(r"/mtas/([^/]+)/messages/([^/]+)", self.path)
                server = by_name.get(unquote(m[1])) if m else None
                found = server is not None and any(t.message_id == unquote(m[2]) for t in server.accepted())
                body = json.dumps({"accepted": True} if found else {"error": "not found"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)


def wait_until(
    what: str,
    check: Callable[[], Any],
    *,
    deadline_s: float = 30.0,
    proc: Any = None,
    detail: Callable[[], Any] | None = None,
) -> Any:
    """Poll `check` until truthy or the deadline (a condition with a deadline, never a bare sleep)."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out after {deadline_s}s waiting for {what}" + (f": {detail()}" if detail else "")
            )
        threading.Event().wait(0.02)  # a poll interval, not a wait for the condition itself


class MailerProcess:
    """`python -m maildrill.examples.mailer` as a real subprocess on port 0 (the port is read from its first line)."""

    def __init__(self, args: list[str], env: dict[str, str], run_dir: Path) -> None:
        self.log = open(run_dir / f"mailer-{time.monotonic_ns()}.stderr.log", "w+")  # noqa: SIM115 (lives with proc)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "maildrill.examples.mailer", "--port", "0", *args],
            cwd=REPO,
            env={**os.environ, "MAILDRILL_RUN_DIR": str(run_dir), **env},
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", first)
        if not m:
            self.proc.wait(10)
            self.log.seek(0)
            raise AssertionError(f"mailer did not start: {first!r} {self.log.read()}")
        self.url = m[1]
        self.banner = first

    def post(self, path: str, email: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path, data=json.dumps({"email": email}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
            return json.loads(resp.read())

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return resp.read().decode()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        return code

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()


@pytest.fixture
def smtp_servers() -> Iterator[Callable[..., ScriptedSMTP]]:
    made: list[ScriptedSMTP] = []

    def make(name: str = "primary", decide: Decide | None = None) -> ScriptedSMTP:
        made.append(ScriptedSMTP(name, decide))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture(params=["sqlite", "redis"])
def queue_env(request: pytest.FixtureRequest, require_system: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The environment selecting the mailer's queue backend: SQLite (default) or a private redis-server."""
    if request.param == "sqlite":
        yield {}
        return
    require_system("redis")  # redis-server and the Python package
    import redis
    # A unix socket (port 0 disables TCP): nothing to collide with, and the path stays under the 108-byte limit.
    base = Path(tempfile.mkdtemp(prefix="mdredis-"))
    sock = base / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(sock))

    def up() -> bool:
        try:
            return bool(sock.exists() and client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until("redis-server up", up, deadline_s=20, proc=proc)
        yield {"MAILER_REDIS_URL": f"unix://{sock}"}
    finally:
        client.close()
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mailer(tmp_path: Path) -> Iterator[Callable[..., MailerProcess]]:
    started: list[MailerProcess] = []

    def start(
        args: list[str],
        *,
        servers: list[ScriptedSMTP],
        status: StatusAPI | None = None,
        time_scale: float = 1.0,
        extra_env: dict[str, str] | None = None,
    ) -> MailerProcess:
        env = {
            "MAILDRILL_SMTP_HOST": "127.0.0.1",
            "MAILDRILL_SMTP_PORT": str(servers[0].port),
            "MAILDRILL_TIME_SCALE": str(time_scale),
            **(extra_env or {}),
        }
        for s in servers:
            env[f"MAILDRILL_SMTP_{s.name.upper()}_HOST"] = "127.0.0.1"
            env[f"MAILDRILL_SMTP_{s.name.upper()}_PORT"] = str(s.port)
        if status is not None:
            env["MAILDRILL_CONTROL_URL"] = status.url
        started.append(MailerProcess(args, env, tmp_path))
        return started[-1]

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


def test_scripted_receiver_tells_accepted_lost_and_refused_apart(smtp_servers: Callable[..., ScriptedSMTP]) -> None:
    import smtplib

    def decide(stage: str, rcpt: str, n: int) -> str | None:
        if rcpt.startswith("grey") and stage == "RCPT" and n == 1:
            return "450 4.2.0 Greylisted"
        if rcpt.startswith("lost") and stage == "DOT":
            return LOSE_ACK
        return None

    server = smtp_servers("primary", decide)
    body = "Message-ID: <m1@x.test>\r\n\r\nhi\r\n"
    for rcpt, refused in (("grey@a.test", True), ("grey@a.test", False), ("ok@a.test", False)):
        sender = f"bounce+{rcpt.replace('@', '=')}@mailer.drill.test"
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
            if refused:
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    c.sendmail(sender, [rcpt], body)
            else:
                c.sendmail(sender, [rcpt], body)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c, pytest.raises(smtplib.SMTPServerDisconnected):
        c.sendmail("bounce+lost=a.test@mailer.drill.test", ["lost@a.test"], body)
    assert [(t.rcpt, t.message_id, t.result, t.stage) for t in server.snapshot()] == [
        ("grey@a.test", None, "450", "RCPT"),
        ("grey@a.test", "<m1@x.test>", "accepted", "DOT"),
        ("ok@a.test", "<m1@x.test>", "accepted", "DOT"),
        ("lost@a.test", "<m1@x.test>", "lost", "DOT"),
    ]
