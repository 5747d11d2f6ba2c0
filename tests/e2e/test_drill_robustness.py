"""kill -9 of the SUT, of a Locust worker, of maildrill itself, and Ctrl-C: what was written stays readable,
the run directory says what happened, and no process is left behind (checked by PID)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from drills import (
    assert_no_process_left,
    child_pids,
    manifest,
    of,
    run_dir_of,
    start_drill,
    write_scenario,
)
from maildrill.harness.events import Event
from maildrill.harness.store import EventStore

pytestmark = pytest.mark.slow

LONG = """\
version: 1
name: long
seed: 5
duration_s: 30
drain_timeout_s: 30
mtas:
  - name: primary
sut:
  command: ["python", "SUT_APP"]
  ready: {http: /healthz, timeout_s: 30}
  env: {SUT_RETRY_S: "0.2"}
load:
  shape: {kind: constant, rps: 10}
  classes:
    - name: otp
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
"""


def wait_events(run_dir: Path, pred: object, what: str, timeout_s: float = 90) -> list[Event]:
    store = EventStore(run_dir / "events")
    return store.wait_for(pred, timeout_s, what=what)  # type: ignore[arg-type]


def in_load_with_requests(n: int) -> object:
    def pred(events: list[Event]) -> bool:
        loading = any(e.kind == "run.phase.changed" and e["phase"] == "load" for e in events)
        return loading and len(of(events, "load.request.completed")) >= n
    return pred


def test_kill_9_of_the_sut_marks_the_run_degraded(tmp_path: Path) -> None:
    proc = start_drill(write_scenario(tmp_path, LONG.replace("duration_s: 30", "duration_s: 4")),
                       tmp_path / "r", "--quiet")
    try:
        run_dir = run_dir_of(tmp_path / "r")
        wait_events(run_dir, in_load_with_requests(5), "load with 5 requests")
        sut_pid, _ = child_pids(run_dir)["sut"]
        os.kill(sut_pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr  # a degraded run cannot pass its verdict
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"]["summary"][0] == "FAIL: the run is degraded, so it cannot pass"
    read = EventStore(run_dir / "events").read()
    assert read.problems == []
    assert [(e["code"], e["expected"]) for e in of(read.events, "sut.exited")] == [(-9, False)]
    degraded = of(read.events, "run.degraded")
    assert [e["component"] for e in degraded] == ["sut"]
    assert degraded[0]["reason"].startswith("the SUT exited with code -9 during the load phase")
    m = manifest(run_dir)
    assert m["status"] == "degraded"
    assert m["degraded"] == [{"component": "sut", "reason": degraded[0]["reason"]}]
    assert [e["status"] for e in of(read.events, "run.ended")] == ["degraded"]
    assert_no_process_left(run_dir)


def test_kill_9_of_a_locust_worker_marks_the_run_degraded(tmp_path: Path) -> None:
    proc = start_drill(write_scenario(tmp_path, LONG.replace("duration_s: 30", "duration_s: 5")),
                       tmp_path / "r", "--quiet", "--workers", "2")
    try:
        run_dir = run_dir_of(tmp_path / "r")
        wait_events(run_dir, in_load_with_requests(6), "load with 6 requests")
        pids = child_pids(run_dir)
        assert set(pids) == {"sut", "locust-master", "locust-worker-0", "locust-worker-1"}
        os.kill(pids["locust-worker-0"][0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr  # degraded: the verdict cannot pass
    read = EventStore(run_dir / "events").read()
    assert [p.message for p in read.problems] in ([], ["truncated last line (its writer stopped mid-write); skipped"])
    degraded = of(read.events, "run.degraded")
    assert [e["component"] for e in degraded] == ["load/worker-0"]
    assert manifest(run_dir)["status"] == "degraded"
    # the surviving worker sent its whole share: the odd-numbered needs
    corrs = {e.corr for e in of(read.events, "load.request.completed")}
    assert {f"u{k:06d}" for k in range(1, 50, 2)} <= corrs
    assert_no_process_left(run_dir)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_remote_worker(port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """`maildrill worker` as another machine would run it: its own directory, no maildrill variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")}
    with open(cwd / "worker.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "maildrill", "worker", "--master", f"127.0.0.1:{port}"],
                                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_kill_9_of_a_remote_locust_worker_marks_the_run_degraded_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    proc = start_drill(write_scenario(tmp_path, LONG.replace("duration_s: 30", "duration_s: 8")),
                       tmp_path / "r", "--quiet", "--workers", "1", "--expect-workers", "1",
                       "--master-bind", f"127.0.0.1:{port}")
    remote = start_remote_worker(port, tmp_path)
    try:
        run_dir = run_dir_of(tmp_path / "r")
        wait_events(run_dir, in_load_with_requests(6), "load with 6 requests")
        os.kill(remote.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        for p in (proc, remote):
            if p.poll() is None:
                p.kill()
        remote.wait(10)
    assert proc.returncode == 1, stderr  # degraded: the verdict cannot pass
    read = EventStore(run_dir / "events").read()
    armed = of(read.events, "load.armed")
    assert [(e["workers"], e["expected"]) for e in armed] == [(2, 2)]
    roster = dict(item.split("=") for item in armed[0]["roster"].split(","))
    i = next(int(index) for index, who in roster.items() if who.endswith(f":{remote.pid}"))
    lost = of(read.events, "load.worker.lost")
    assert [(e["worker"], e["worker_pid"], e["reason"]) for e in lost] == [
        (i, remote.pid, "stopped answering the Locust master (no heartbeat for 3 s)")]
    degraded = of(read.events, "run.degraded")
    assert [(e["component"], e["reason"]) for e in degraded] == [
        (f"load/worker-{i}", f"Locust worker {lost[0]['worker_host']}:{remote.pid} stopped answering the Locust "
                             "master (no heartbeat for 3 s) mid-run; its share of the load was not sent")]
    assert manifest(run_dir)["status"] == "degraded"
    # the local worker sent its whole share
    corrs = {e.corr for e in of(read.events, "load.request.completed")}
    assert {f"u{k:06d}" for k in range(1 - i, 80, 2)} <= corrs
    assert_no_process_left(run_dir)


def test_a_remote_worker_that_never_joins_degrades_the_run_and_none_at_all_fails_it(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, LONG.replace("duration_s: 30", "duration_s: 2"))
    proc = start_drill(scenario, tmp_path / "r", "--quiet", "--workers", "1", "--expect-workers", "1",
                       "--worker-wait", "3")
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stderr
    run_dir = run_dir_of(tmp_path / "r")
    read = EventStore(run_dir / "events").read()
    degraded = [(e["component"], e["reason"]) for e in of(read.events, "run.degraded")]
    (armed,) = of(read.events, "load.armed")
    assert len(degraded) == 1 and degraded[0][0] == "load"
    assert degraded[0][1].startswith("2 Locust workers expected, 1 joined the master at 127.0.0.1:")
    assert degraded[0][1].endswith(f" within 3 s; the load was split among the 1 that did (roster {armed['roster']})")
    assert len({e.corr for e in of(read.events, "load.request.completed")}) == 20  # the one that came sent it all
    assert_no_process_left(run_dir)

    proc = start_drill(scenario, tmp_path / "r0", "--quiet", "--expect-workers", "2", "--worker-wait", "2")
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 3, stderr
    run_dir = run_dir_of(tmp_path / "r0")
    assert manifest(run_dir)["status"] == "failed"
    reason = str(manifest(run_dir)["status_reason"])
    assert reason.startswith("Locust did not start: no Locust worker joined the master at 127.0.0.1:5557 within 2 s "
                             "(expected 2 workers: 0 local, 2 remote) (0/2 processes ready); see "), reason
    assert_no_process_left(run_dir)


def test_kill_9_of_maildrill_leaves_no_process_and_the_watchdog_says_so(tmp_path: Path) -> None:
    proc = start_drill(write_scenario(tmp_path, LONG), tmp_path / "r", "--quiet")
    try:
        run_dir = run_dir_of(tmp_path / "r")
        wait_events(run_dir, in_load_with_requests(5), "load with 5 requests")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_no_process_left(run_dir)
    deadline = time.monotonic() + 20
    while manifest(run_dir)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval of a deadline-bounded wait (the watchdog finishing)
    m = manifest(run_dir)
    assert m["status"] == "interrupted"
    assert str(m["status_reason"]).startswith(f"maildrill (pid {proc.pid}) ended without finishing the run")
    read = EventStore(run_dir / "events").read()
    assert len(of(read.events, "load.request.completed")) >= 5
    assert [e["status"] for e in of(read.events, "run.ended")] == ["interrupted"]
    assert all(p.message.startswith("truncated last line") for p in read.problems)


def test_ctrl_c_stops_everything_promptly(tmp_path: Path) -> None:
    proc = start_drill(write_scenario(tmp_path, LONG), tmp_path / "r", "--quiet")
    try:
        run_dir = run_dir_of(tmp_path / "r")
        wait_events(run_dir, in_load_with_requests(5), "load with 5 requests")
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    # Each child's stop is capped at 3 s after a Ctrl-C (about 5 s in all on an idle machine); the bound leaves
    # room for a loaded one and is still far below the 30 s load + 30 s drain the drill had left.
    assert took < 20.0, f"maildrill took {took:.1f} s to stop after SIGINT"
    assert proc.returncode == 3, stderr
    assert_no_process_left(run_dir, timeout_s=5)  # stragglers of a killed group: a loaded machine reaps late
    m = manifest(run_dir)
    assert m["status"] == "interrupted"
    read = EventStore(run_dir / "events").read()
    assert read.problems == []
    assert [e["status"] for e in of(read.events, "run.ended")] == ["interrupted"]
    assert len(of(read.events, "load.request.completed")) >= 5
