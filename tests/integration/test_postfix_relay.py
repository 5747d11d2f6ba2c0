"""Real Postfix as the system under test: a private instance relays to a scripted receiver that greylists."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_mailer_smtpd as smtpd
from test_mailer_smtpd import ScriptedSMTP, wait_until

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(
        shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists(),
        reason="Postfix is not installed: apt-get install postfix",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix master must be started as root (run under sudo)"),
]

smtp_servers = smtpd.smtp_servers


# The defaults of `python -m maildrill.examples.postfix` (the usual recipe for pointing Postfix at a test relay).
MIN_BACKOFF_S, MAX_BACKOFF_S, QUEUE_RUN_DELAY_S = 5, 10, 5


def sut(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maildrill.examples.postfix", *args],
        cwd=smtpd.REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def postqueue(instance_dir: Path) -> str:
    return subprocess.run(
        ["postqueue", "-c", str(instance_dir / "etc"), "-j"], capture_output=True, text=True, timeout=30, check=False
    ).stdout


def free_port() -> int:
    # Postfix can't bind port 0 and report it back, so borrow a free port from the kernel (tiny reuse race).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postfix_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's base dir is mode 700, and Postfix's daemons (user postfix) must traverse the path.
    base = Path(tempfile.mkdtemp(prefix="maildrill-postfix-"))
    os.chmod(base, 0o755)
    yield base / "postfix"
    shutil.rmtree(base, ignore_errors=True)


def test_postfix_retries_greylisting_within_its_backoff_without_duplicates_or_5xx_retries(
    smtp_servers: Callable[..., ScriptedSMTP], postfix_dir: Path
) -> None:
    def decide(stage: str, rcpt: str, n: int) -> str | None:
        if stage == "RCPT" and rcpt.startswith("grey") and n == 1:
            return f"450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted"
        if stage == "RCPT" and rcpt.startswith("gone"):
            return "550 5.1.1 The email account that you tried to reach does not exist."
        return None

    receiver = smtp_servers("primary", decide)
    port = free_port()
    started = sut("start", "--dir", str(postfix_dir), "--port", str(port), "--relay-port", str(receiver.port))
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("postfix: running pid=") and f"listen=127.0.0.1:{port} " in started.stdout
    try:
        recipients = [f"grey{i}@users.drill.test" for i in range(4)] + [
            "ok0@users.drill.test",
            "gone0@users.drill.test",
        ]
        message_ids = {}
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            for rcpt in recipients:
                message_ids[rcpt] = f"<{rcpt.split('@')[0]}.1@app.drill.test>"
                body = f"From: app@app.drill.test\r\nTo: {rcpt}\r\nMessage-ID: {message_ids[rcpt]}\r\n\r\nhello\r\n"
                assert client.sendmail("app@app.drill.test", [rcpt], body) == {}
        wanted = {*recipients[:5], "app@app.drill.test"}  # + the bounce Postfix sends the sender for the 550
        wait_until(
            "greylisted mail retried and delivered",
            lambda: {t.rcpt for t in receiver.accepted()} >= wanted,
            deadline_s=90,
        )
        txns = receiver.snapshot()
        results: dict[str, list[str]] = {}
        for t in txns:
            results.setdefault(t.rcpt, []).append(t.result)
        assert results == {
            **{f"grey{i}@users.drill.test": ["450", "accepted"] for i in range(4)},
            "ok0@users.drill.test": ["accepted"],
            "gone0@users.drill.test": ["550"],  # never retried
            "app@app.drill.test": ["accepted"],  # the non-delivery report, sent once
        }
        # Retries land between minimal_backoff_time and maximal_backoff_time + one queue run (+ slack for load).
        # Postfix keeps a deferred message's next-attempt time in its queue file's mtime, in whole seconds,
        # so a retry can come up to 1 s before minimal_backoff_time (seen here: 4.06 s with 5 s).
        for i in range(4):
            first, second = [t.t for t in txns if t.rcpt == f"grey{i}@users.drill.test"]
            gap = second - first
            assert MIN_BACKOFF_S - 1.5 <= gap <= MAX_BACKOFF_S + QUEUE_RUN_DELAY_S + 5, gap
        accepted = Counter(t.message_id for t in receiver.accepted())
        assert {m: accepted[m] for m in message_ids.values()} == {
            **{message_ids[r]: 1 for r in recipients[:5]},
            message_ids["gone0@users.drill.test"]: 0,
        }
        wait_until("queue empty", lambda: postqueue(postfix_dir) == "", deadline_s=30)
    finally:
        stopped = sut("stop", "--dir", str(postfix_dir))
    assert stopped.returncode == 0, stopped.stderr
    status = sut("status", "--dir", str(postfix_dir))
    assert (status.returncode, status.stdout) == (1, f"postfix: not running dir={postfix_dir}\n")
