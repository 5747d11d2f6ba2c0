"""The standalone fleet demo: a few scripted MTAs, real mail sent to each with smtplib, a table of what each replied."""

from __future__ import annotations

import smtplib
import tempfile
from collections import Counter
from pathlib import Path

from maildrill.fake_mta.clock import MonotonicClock
from maildrill.fake_mta.config import FleetSpec, MTASpec
from maildrill.fake_mta.testing import FleetThread
from maildrill.harness.store import EventStore, EventWriter

FLEET = FleetSpec(mtas=[
    MTASpec(name="accepting"),
    MTASpec(name="gmail", preset="gmail", behaviors=[{"kind": "throttle", "rate_per_s": 0.01, "burst": 2}]),
    MTASpec(name="postgrey", preset="postgrey", behaviors=[{"kind": "greylist", "min_delay_s": 1.0}]),
    MTASpec(name="ses", preset="ses", behaviors=[{"kind": "throttle", "rate_per_s": 0.01, "burst": 2}]),
    MTASpec(name="unknown-user", behaviors=[{"kind": "reject", "reason": "unknown_user",
                                             "match_rcpt": "^ghost"}]),
    MTASpec(name="lose-ack", behaviors=[{"kind": "go_dark", "mode": "lose_ack"}]),
    MTASpec(name="blackhole", behaviors=[{"kind": "go_dark", "mode": "blackhole"}]),
])
MESSAGES = 3


def _send(port: int, i: int) -> str:
    """One message; what the client saw, in one line."""
    rcpt = f"{'ghost' if i == 2 else 'u'}{i:03d}@users.drill.test"
    msg = f"Message-ID: <demo-{port}-{i}@app.drill.test>\r\nSubject: your code\r\n\r\ncode {100000 + i}\r\n"
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail("noreply@app.drill.test", [rcpt], msg.encode())
        return f"250 delivered to {rcpt}" if not refused else f"refused {refused}"
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = exc.recipients[rcpt]
        return _short(code, text)
    except smtplib.SMTPResponseException as exc:
        return _short(exc.smtp_code, exc.smtp_error)
    except smtplib.SMTPServerDisconnected:
        return "connection closed without a reply"


def _short(code: int, text: bytes) -> str:
    lines = text.decode(errors="replace").splitlines()
    more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    first = lines[0] if lines else ""
    return f"{code} {first[:72]}{'...' if len(first) > 72 else ''}{more}"


def main(events_dir: Path | None = None) -> int:
    """Runs the demo; events go to `events_dir` (default: a new temporary directory, printed)."""
    events_dir = events_dir or Path(tempfile.mkdtemp(prefix="maildrill-demo-")) / "events"
    clock = MonotonicClock()
    writer = EventWriter(events_dir / "mta.jsonl", "mta", clock)
    print(f"maildrill demo: {len(FLEET.mtas)} fake MTAs, {MESSAGES} messages to each, sent with smtplib\n")
    rows: list[tuple[str, int, str]] = []
    with FleetThread(FLEET, recorder=writer, clock=clock) as fleet:
        for spec in FLEET.mtas:
            for i in range(MESSAGES):
                rows.append((spec.name, i + 1, _send(fleet[spec.name].port, i)))
        print(f"control API: {fleet.control_url} (GET /mtas, /metrics)")
    writer.close()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'MTA':<{width}}  #  what the client saw")
    for name, i, seen in rows:
        print(f"{name:<{width}}  {i}  {seen}")
    events = EventStore(events_dir).events()
    print(f"\nrecorded {len(events)} events in {events_dir}:")
    for kind, n in sorted(Counter(e.kind for e in events).items()):
        print(f"  {kind:<24} {n}")
    deciders = Counter((e.source, e["behavior"], e["code"]) for e in events
                       if e.kind == "mta.reply.sent" and e["behavior"] != "default")
    print("\nreplies decided by a behaviour (source, behaviour, code: count):")
    for (source, behavior, code), n in sorted(deciders.items()):
        print(f"  {source:<18} {behavior:<10} {code}: {n}")
    lost = [e.corr for e in events if e.kind == "mta.message.accepted" and e["ack"] == "lost"]
    print(f"\nstored but never acknowledged (a retry would duplicate them): {lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
