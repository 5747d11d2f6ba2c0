"""Reports rebuilt from a run directory: summary.json, junit.xml, report.md, a self-contained report.html,
figures, and what happens with damaged event files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from maildrill.harness.analysis.synthetic import Attempt, Message, Model, events
from maildrill.harness.report import write_reports
from maildrill.harness.report.figures import FIGURES
from maildrill.harness.store import EventWriter

MODEL = Model((
    Message("u000000", "otp", (0.5,), (Attempt(1.0, "primary", "4xx"), Attempt(3.0, "primary", "sent"))),
    Message("u000001", "otp", (0.7,), (Attempt(1.2, "primary", "lost"), Attempt(3.2, "backup", "sent"))),
    Message("u000002", "otp", (0.9,), (Attempt(1.4, "primary", "5xx"), Attempt(3.4, "primary", "5xx"))),
    Message("u000003", "reset", (1.1,), (Attempt(1.6, "primary", "sent"),)),
), {"otp": 30.0, "reset": 300.0}, time_scale=1.0, t0_s=2.0, duration_s=10.0)


def make_run(root: Path, name: str = "20261124-120000-demo-s1", *, thresholds: dict | None = None,
             status: str = "completed") -> Path:
    run = root / name
    (run / "events").mkdir(parents=True)
    scenario = {**MODEL.scenario(), "name": "demo", "description": "a small story", "seed": 1,
                "thresholds": thresholds if thresholds is not None else {
                    "duplicates": {"max": 0}, "permanent_failures_retried": {"max": 0},
                    "latency_p99_s[otp]": {"max": 30}}}
    (run / "scenario.json").write_text(json.dumps(scenario))
    (run / "manifest.json").write_text(json.dumps({
        "schema": "maildrill.manifest", "version": 1, "run_id": name, "scenario": "demo", "seed": 1,
        "time_scale": 1.0, "started_at": "2026-11-24T12:00:00+00:00", "ended_at": "2026-11-24T12:00:20+00:00",
        "status": status, "status_reason": None if status == "completed" else "the SUT died",
        "reproduce": "maildrill run demo.yaml --seed 1", "degraded": []}))
    writers = {s: EventWriter(run / "events" / f"{s.replace('/', '-')}.jsonl", s) for s in ("run", "load/0",
                                                                                            "mta/primary",
                                                                                            "mta/backup")}
    for e in events(MODEL):
        writers[e.source].write(e)
    for w in writers.values():
        w.close()
    return run


def test_every_report_is_written_and_says_the_same_verdict(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    verdict = write_reports(run)
    assert (verdict.passed, verdict.exit_code) == (False, 1)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["schema"], summary["version"]) == ("maildrill.summary", 1)
    assert summary["run"]["run_id"] == run.name and summary["run"]["reproduce"] == "maildrill run demo.yaml --seed 1"
    assert [(c["threshold"], c["passed"], c["reason"]) for c in summary["verdict"]["checks"]] == [
        ("duplicates", False, "1 > max 0"), ("permanent_failures_retried", False, "1 > max 0"),
        ("latency_p99_s[otp]", True, "2.5 s <= max 30")]
    m = summary["metrics"]
    assert (m["messages_requested"], m["delivered"], m["duplicates"], m["duplicates_after_lost_ack"],
            m["attempts_total"]) == (4, 3, 1, 1, 7)
    assert summary["by_mta"]["backup"]["duplicates"] == 1
    assert sorted((o["rule"], o["corr"]) for o in summary["offenders"]) == [
        ("duplicates", "u000001"), ("otp_expired", "u000002"), ("permanent_failures_retried", "u000002"),
        ("undelivered", "u000002")]

    suite = ET.parse(run / "junit.xml").getroot()
    cases = [(c.get("name"), c.find("failure") is not None) for c in suite.iter("testcase")]
    assert cases == [("run status", False), ("duplicates", True), ("permanent_failures_retried", True),
                     ("latency_p99_s[otp]", False)]
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    assert suite.find("testcase[@name='duplicates']/failure").get("message") == "1 > max 0"

    md = (run / "report.md").read_text()
    assert md.startswith("## maildrill: demo — ❌ FAIL\n")
    assert "| `duplicates` | 1 > max 0 | **FAIL** |" in md

    html = (run / "report.html").read_text()
    assert html.index("FAIL — demo") < html.index("<h2>")  # the verdict comes first
    assert re.findall(r"(?:src|href)\s*=\s*['\"](?!data:)([^'\"]+)", html) == []  # nothing fetched from anywhere
    assert not re.search(r"https?://|@import|url\(", html)
    for name in FIGURES:
        png = (run / "figures" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
        assert f"id='fig-{name}'" in html
    assert html.count("data:image/png;base64,") == len(FIGURES)
    index = (tmp_path / "index.html").read_text()
    assert run.name in index and "FAIL" in index


def test_a_run_that_did_not_complete_cannot_pass(tmp_path: Path) -> None:
    run = make_run(tmp_path, thresholds={}, status="degraded")
    verdict = write_reports(run)
    assert (verdict.passed, verdict.summary_lines()[0]) == (False, "FAIL: the run is degraded, so it cannot pass")
    suite = ET.parse(run / "junit.xml").getroot()
    assert suite.find("testcase[@name='run status']/failure").get("message") == "the run is degraded"


def test_damaged_event_files_are_named_and_the_rest_is_still_analysed(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with open(run / "events" / "mta-backup.jsonl", "a") as f:
        f.write('{"t_s": 9.9, "source": "mta/backup", "kind": "mta.repl')  # half-written last line
    (run / "events" / "garbage.jsonl").write_text("not json at all\n")
    (run / "events" / "future.jsonl").write_text(
        '{"schema": "maildrill.events", "version": 99, "source": "x"}\n{"t_s": 1, "source": "x", "kind": "k"}\n')
    write_reports(run)
    summary = json.loads((run / "summary.json").read_text())
    skipped = summary["skipped"]
    assert len(skipped) == 3
    assert skipped[0].startswith("events/future.jsonl:1: ") and "version 99" in skipped[0]
    assert skipped[1].startswith("events/garbage.jsonl:1: ")
    assert skipped[2].startswith("events/mta-backup.jsonl:") and "truncated last line" in skipped[2]
    assert summary["metrics"]["messages_requested"] == 4  # everything readable was analysed
    html = (run / "report.html").read_text()
    assert "3 event line(s) could not be read" in html and "events/garbage.jsonl:1" in html


def test_not_a_run_directory_is_a_usage_error(tmp_path: Path) -> None:
    from maildrill.harness.errors import UsageError

    with pytest.raises(UsageError, match="no such run directory"):
        write_reports(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run directory"):
        write_reports(tmp_path / "empty")
