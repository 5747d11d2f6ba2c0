"""Whole drills through `maildrill run`: real Locust, a real SUT subprocess, real fake MTAs (and proxy), a timeline."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from drills import assert_no_process_left, manifest, of, run_dir_of, start_drill, write_scenario
from maildrill.harness.faults.real import find_toxiproxy
from maildrill.harness.store import EventStore

pytestmark = pytest.mark.slow


DARK_AND_BACK = """\
version: 1
name: dark-and-back
seed: 7
time_scale: 0.5           # replayed twice as fast: 4 s of load at 5 req/s, the MTA dark from 1 s to 2.5 s
duration_s: 8
drain_timeout_s: 60
mtas:
  - name: primary
sut:
  command: ["python", "SUT_APP"]
  ready: {http: /healthz, timeout_s: 30}
  env: {SUT_RETRY_S: "0.2"}
  queue_depth: {http: /metrics, metric: sut_queue_depth}
load:
  shape: {kind: constant, rps: 2.5}
  classes:
    - name: otp
      ttl_s: 30
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
timeline:
  - {at_s: 2, mta: primary, set: [{kind: go_dark, mode: refuse}]}
  - {at_s: 5, mta: primary, set: [{kind: accept}]}
"""


def test_drill_takes_the_mta_dark_and_back_and_every_request_is_delivered_once(tmp_path: Path) -> None:
    proc = start_drill(write_scenario(tmp_path, DARK_AND_BACK), tmp_path / "reports", "--quiet")
    _, stderr = proc.communicate(timeout=120)
    run_dir = run_dir_of(tmp_path / "reports")
    assert proc.returncode == 0, stderr
    read = EventStore(run_dir / "events").read()
    assert read.problems == []
    events = read.events
    corrs = [f"u{k:06d}" for k in range(20)]  # 5 req/s for 4 s

    requests = of(events, "load.request.completed")
    assert sorted(e.corr for e in requests) == corrs
    assert {(e["class"], e["method"], e["target"], e["status"], e["ok"], e["resend"]) for e in requests} == {
        ("otp", "POST", "/otp", 202, True, 0)}

    accepted = of(events, "mta.message.accepted")
    assert Counter(e.corr for e in accepted) == Counter(corrs)  # every message, none twice
    assert {e["rcpt"] for e in accepted} == {f"{c}@users.drill.test" for c in corrs}

    fired = [(e["action"], e["target"], e["what"]) for e in of(events, "run.action.fired")]
    assert fired == [(0, "mta/primary", "set go_dark(refuse)"), (1, "mta/primary", "set accept")]
    listener = [(e.kind, e["reason"]) for e in events if e.kind.startswith("mta.listener.")]
    assert listener == [("mta.listener.opened", "started"), ("mta.listener.closed", "go_dark refuse"),
                        ("mta.listener.opened", "behaviors changed"), ("mta.listener.closed", "stopped")]
    closed_t = next(e.t_s for e in events if e.kind == "mta.listener.closed")
    reopened_t = [e.t_s for e in events if e.kind == "mta.listener.opened"][1]
    # what was requested while the MTA was dark was delivered only after it came back
    dark = {e.corr for e in requests if closed_t + 0.2 < e.t_s < reopened_t - 0.2}
    assert len(dark) >= 4
    assert all(e.t_s > reopened_t for e in accepted if e.corr in dark)
    assert all(e.t_s < closed_t or e.t_s > reopened_t for e in accepted)

    phases = [e["phase"] for e in of(events, "run.phase.changed")]
    assert phases == ["startup", "load", "drain", "teardown"]
    assert [e["status"] for e in of(events, "run.ended")] == ["completed"]
    assert [(e["expected"], e["code"]) for e in of(events, "sut.exited")] == [(True, 0)]
    assert of(events, "sut.queue_depth.sampled")
    m = manifest(run_dir)
    assert (m["status"], m["seed"], m["scenario"], m["time_scale"]) == ("completed", 7, "dark-and-back", 0.5)
    assert m["reproduce"] == f"maildrill run {tmp_path / 'drill.yaml'} --seed 7"
    assert (run_dir / "locust" / "stats_stats.csv").exists()
    mta_port = next(e["port"] for e in events if e.kind == "mta.listener.opened")
    sut_port = next(e["port"] for e in events if e.kind == "sut.started")
    assert (run_dir / "sut" / "stdout.log").read_text().splitlines()[0] == (
        f"sut: listening on http://127.0.0.1:{sut_port} smtp=127.0.0.1:{mta_port} time_scale=0.5 "
        f"run_dir={run_dir.resolve()}")
    plain = json.loads((run_dir / "scenario.json").read_text())
    assert (plain["name"], plain["duration_s"], plain["time_scale"]) == ("dark-and-back", 8, 0.5)
    t0 = next(e["load_t0_s"] for e in events if e.kind == "run.phase.changed" and e["phase"] == "load")
    assert [round(e["scheduled_t_s"] - t0, 6) for e in of(events, "run.action.fired")] == [1.0, 2.5]
    assert_no_process_left(run_dir)


PATIENCE_AND_SMTP = """\
version: 1
name: patience
seed: 3
duration_s: 3
drain_timeout_s: 20
mtas:
  - name: primary
    behaviors: [{kind: go_dark, mode: blackhole}]
load:
  shape: {kind: burst, count: 4, at_s: 0}
  classes:
    - name: otp
      ttl_s: 30
      resend_after_s: 1
      max_resends: 2
      smtp: {host: 127.0.0.1, port: MTA_PORT}
"""


def test_smtp_requests_and_patient_users_resend_with_the_same_corr(tmp_path: Path) -> None:
    # the fake MTA is itself the SMTP target here (an SMTP SUT such as Postfix in real drills); it blackholes,
    # so no user ever gets the code and each asks twice more, one second apart
    import socket

    with socket.socket() as s:  # a port for a second fake MTA started by this test to be the SUT
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = PATIENCE_AND_SMTP.replace("MTA_PORT", str(port)).replace(
        "  - name: primary\n", f"  - name: primary\n    port: {port}\n")
    proc = start_drill(write_scenario(tmp_path, body), tmp_path / "reports", "--quiet")
    _, stderr = proc.communicate(timeout=120)
    run_dir = run_dir_of(tmp_path / "reports")
    assert proc.returncode == 0, stderr
    events = EventStore(run_dir / "events").events()
    requests = sorted((e.corr, e["resend"], e["status"], e["target"]) for e in of(events, "load.request.completed"))
    assert requests == [(f"u{k:06d}", r, 250, "smtp") for k in range(4) for r in range(3)]
    assert Counter(e.corr for e in of(events, "mta.message.discarded")) == {f"u{k:06d}": 3 for k in range(4)}
    assert of(events, "mta.message.accepted") == []
    assert manifest(run_dir)["status"] == "completed"


PROXY = """\
version: 1
name: proxied
seed: 1
duration_s: 3
drain_timeout_s: 20
mtas:
  - name: primary
proxies:
  - {name: primary, upstream: primary}
sut:
  command: ["python", "SUT_APP"]
  ready: {http: /healthz}
load:
  shape: {kind: constant, rps: 4}
  classes:
    - {name: otp, request: {path: /otp, json: {email: "{recipient}"}}}
timeline:
  - {at_s: 0.5, proxy: primary, toxic: {type: latency, attributes: {latency: 300}}, for_s: 1}
  - {at_s: 2, proxy: primary, enabled: false, for_s: 0.5}
"""


def test_a_bad_scenario_exits_2_and_an_unreachable_sut_exits_3(tmp_path: Path) -> None:
    bad = write_scenario(tmp_path, DARK_AND_BACK.replace("duration_s: 8", "duration_s: -4"))
    proc = start_drill(bad, tmp_path / "reports")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "duration_s = -4: must be > 0" in stderr
    remote = write_scenario(tmp_path, DARK_AND_BACK)
    proc = start_drill(remote, tmp_path / "reports", "--sut-url", "http://192.0.2.1:80", "--quiet")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "is not on this machine" in stderr
    unreachable = write_scenario(tmp_path, DARK_AND_BACK.replace("ready: {http: /healthz, timeout_s: 30}",
                                                                 "ready: {http: /nope, timeout_s: 2}"))
    proc = start_drill(unreachable, tmp_path / "out3", "--quiet")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    run_dir = run_dir_of(tmp_path / "out3")
    m = manifest(run_dir)
    assert m["status"] == "failed"
    assert "the SUT was not ready after 2 s (GET http://127.0.0.1:" in str(m["status_reason"])
    assert_no_process_left(run_dir)
    assert os.path.exists(run_dir / "events" / "run.jsonl")


@pytest.mark.parametrize("proxy", ["embedded", "real"])
def test_drill_through_the_fault_proxy(tmp_path: Path, proxy: str) -> None:
    extra = []
    if proxy == "real":
        if find_toxiproxy() is None:
            pytest.skip("no toxiproxy-server on PATH: the drill through a real Toxiproxy is not run")
        extra = ["--toxiproxy-server"]
    proc = start_drill(write_scenario(tmp_path, PROXY), tmp_path / "reports", "--quiet", *extra)
    _, stderr = proc.communicate(timeout=120)
    run_dir = run_dir_of(tmp_path / "reports")
    assert proc.returncode == 0, stderr
    events = EventStore(run_dir / "events").events()
    assert sorted(e.corr for e in of(events, "load.request.completed")) == [f"u{k:06d}" for k in range(12)]
    assert Counter(e.corr for e in of(events, "mta.message.accepted")) == Counter(f"u{k:06d}" for k in range(12))
    assert [(e["target"], e["what"]) for e in of(events, "run.action.fired")] == [
        ("proxy/primary", "toxic latency downstream"), ("proxy/primary", "disable")]
    assert [(e["target"], e["what"]) for e in of(events, "run.action.undone")] == [
        ("proxy/primary", "toxic latency downstream"), ("proxy/primary", "disable")]
    kinds = [e.kind for e in events if e.source.startswith("proxy")]
    assert kinds[:1] == ["proxy.created"]
    assert {"proxy.toxic.added", "proxy.toxic.removed", "proxy.disabled", "proxy.enabled"} <= set(kinds)
    sut_env_port = [e for e in events if e.kind == "mta.connection.opened"]
    assert sut_env_port, "the SUT reached the MTA (through the proxy)"
    assert manifest(run_dir)["status"] == "completed"


