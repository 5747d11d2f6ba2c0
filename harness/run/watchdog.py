"""The run's watchdog: if maildrill dies (kill -9), end its children by PID and say so in the run directory.

Started by the orchestrator as ``python -m maildrill.harness.run.watchdog RUN_DIR HARNESS_PID`` in its own
session, with a pipe on stdin whose write end only maildrill holds. End of file on that pipe without
the word ``done`` first means maildrill is gone: the watchdog kills the process group of every child
listed in ``pids.jsonl`` (checking each PID's start time, so a reused PID is never touched), marks the
manifest ``interrupted`` with the reason, records ``run.ended``, and exits. Bounded: it does nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from maildrill.harness.children import alive, group_members


def _kill_children(run_dir: Path) -> list[str]:
    ended = []
    try:
        lines = (run_dir / "pids.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ended
    for line in lines:
        try:
            rec = json.loads(line)
            pid, start = int(rec["pid"]), rec.get("start_time")
        except (ValueError, KeyError, TypeError):
            continue
        targets = [pid] if alive(pid, start) else []
        targets += [p for p in group_members(pid) if p != pid]
        for p in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        if targets:
            ended.append(f"{rec.get('name')} (pid {pid})")
    return ended


def _finish(run_dir: Path, harness_pid: int, ended: list[str]) -> None:
    from maildrill.harness.clock import clock_from_env
    from maildrill.harness.run.rundir import read_manifest, update_manifest
    from maildrill.harness.store import EventWriter

    manifest = read_manifest(run_dir)
    if manifest.get("status") not in (None, "running"):
        return  # maildrill finished the run itself
    reason = (f"maildrill (pid {harness_pid}) ended without finishing the run (killed?); the watchdog ended "
              f"{', '.join(ended) or 'no remaining children'}; events recorded until then are kept")
    with EventWriter(run_dir / "events" / "watchdog.jsonl", "run", clock_from_env()) as w:
        w.record("run.degraded", None, component="harness", reason=reason)
        w.record("run.ended", None, status="interrupted")
    update_manifest(run_dir, status="interrupted", status_reason=reason,
                    ended_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    degraded=[*manifest.get("degraded", []), {"component": "harness", "reason": reason}])


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for maildrill, which tells us "done"
    run_dir, harness_pid = Path(argv[0]), int(argv[1])
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(0, 64):
            data += chunk
    if b"done" in data:
        return 0
    ended = _kill_children(run_dir)
    _finish(run_dir, harness_pid, ended)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
