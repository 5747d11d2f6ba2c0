"""A real MTA as the system under test: the bundled postfix-greylist drill against a private Postfix."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from maildrill.harness.store import EventStore
from test_drill_matrix import SCENARIOS, drill

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postfix,
    pytest.mark.requires("postfix"),
]


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """Postfix's daemons run as user postfix: its instance directory must be reachable by that user, and
    pytest's tmp_path lives under a 0700 directory."""
    path = Path(tempfile.mkdtemp(prefix="maildrill-postfix-drill-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postfix_retries_a_greylisted_message_within_its_backoff_and_delivers_each_once(traversable_dir: Path) -> None:
    code, run_dir, summary = drill(traversable_dir, SCENARIOS / "postfix-greylist.yaml")
    m = summary["metrics"]
    requested = [f"u{k:06d}" for k in range(20)]  # 2 submissions/s for 10 s
    assert (m["messages_requested"], m["delivered"], m["undelivered"]) == (20, 20, 0)
    assert (m["duplicates"], m["permanent_failures_retried"]) == (0, 0)
    # Postfix: minimal_backoff_time 5 s, queue_run_delay 5 s, maximal_backoff_time 10 s -> 5..15 s
    assert m["retry_interval_p50_s"] >= 5 and m["retry_interval_p95_s"] <= 15
    assert code == 0, summary["verdict"]
    events = EventStore(run_dir / "events").events()
    greylisted = Counter(e.corr for e in events if e.kind == "mta.reply.sent" and e["verb"] == "RCPT"
                         and e["code"] == 450)
    assert greylisted == Counter(requested)  # each new triplet deferred exactly once, then let through
