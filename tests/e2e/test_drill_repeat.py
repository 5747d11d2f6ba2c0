"""`maildrill run --repeat 3` end to end: three real drills (Locust subprocess, fake MTA over real SMTP), the combined
directory, its summary.json and junit.xml against the member runs' own summaries, and `maildrill report` rebuilding
the combined report from the member run directories alone."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from maildrill.harness.load.plan import pick_class
from maildrill.harness.report.summary import HEADLINE
from maildrill.harness.scenario import parse_scenario_text

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# eight needs split between classes a and b by the seed: the split differs per seed, so thresholds on it are
# deterministic per run and differ across runs (flaky), while everything is delivered every time
TINY = """\
version: 1
name: repeat-tiny
seed: 1
duration_s: 2
drain_timeout_s: 20
mtas:
  - {name: primary, port: PORT}
load:
  shape: {kind: burst, count: 8, at_s: 0}
  classes:
    - {name: a, smtp: {host: 127.0.0.1, port: PORT}}
    - {name: b, smtp: {host: 127.0.0.1, port: PORT}}
thresholds:
  duplicates: {max: 0}
  messages_requested[a]: {min: 3}
  messages_requested[b]: {max: 2}
  delivered[a]: {min: 3, over: median}
  delivered[b]: {min: 4, over: min}
  delivered: {min: 8, max: 8, over: p90}
"""
EXPECTED = {  # threshold: (outcome, label)
    "duplicates": ("pass", "stable pass"),
    "messages_requested[a]": ("flaky", "flaky (2 of 3 passed)"),
    "messages_requested[b]": ("fail", "stable fail"),
    "delivered[a]": ("pass", "pass on median"),
    "delivered[b]": ("fail", "fail on min"),
    "delivered": ("pass", "pass on p90"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maildrill(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildrill", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def test_repeat_3_writes_member_runs_and_a_combined_stability_verdict(tmp_path: Path) -> None:
    body = TINY.replace("PORT", str(free_port()))
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(body)
    classes = parse_scenario_text(body).load.classes
    split = [sum(pick_class(list(classes), seed, k).name == "a" for k in range(8)) for seed in (1, 2, 3)]
    assert split == [1, 3, 5]  # the premise of EXPECTED: class a gets 1, 3, 5 of the 8 needs in seeds 1, 2, 3

    out = tmp_path / "reports"
    proc = maildrill("run", str(scenario), "--repeat", "3", "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stderr  # a stable fail

    (combined,) = [d for d in out.iterdir() if d.name.endswith("-repeat")]
    record = json.loads((combined / "repeat.json").read_text())
    member_dirs = sorted(d for d in out.iterdir() if d.is_dir() and d != combined)
    assert [(m["run_id"], m["path"], m["seed"]) for m in record["members"]] == [
        (d.name, f"../{d.name}", seed) for d, seed in zip(member_dirs, (1, 2, 3), strict=True)]
    assert (record["runs_requested"], record["same_seed"], record["stopped"], record["reproduce"]) == (
        3, False, None, f"maildrill run {scenario} --seed 1 --repeat 3")
    assert combined.name == f"{member_dirs[0].name}-repeat"
    subs = [json.loads((d / "summary.json").read_text()) for d in member_dirs]
    assert [s["run"]["status"] for s in subs] == ["completed"] * 3
    assert [s["by_class"]["a"]["messages_requested"] for s in subs] == split
    assert [s["metrics"]["delivered"] for s in subs] == [8, 8, 8]

    summary = json.loads((combined / "summary.json").read_text())
    assert (summary["schema"], summary["version"]) == ("maildrill.repeat.summary", 1)
    assert list(summary) == ["schema", "version", "repeat", "verdict", "metrics", "members"]
    spreads = {}
    for name in HEADLINE:
        values = [s["metrics"][name] for s in subs]
        if all(v is None for v in values):  # e.g. retry_sync_index: no retries in this drill
            spreads[name] = {"min": None, "median": None, "max": None}
        else:
            spreads[name] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    assert summary["metrics"] == spreads
    assert summary["metrics"]["messages_requested"] == {"min": 8, "median": 8, "max": 8}
    assert summary["repeat"] == {
        "repeat_id": combined.name, "scenario": "repeat-tiny", "description": "", "scenario_file": str(scenario),
        "runs_requested": 3, "runs": 3, "same_seed": False, "seeds": [1, 2, 3], "started_at": record["started_at"],
        "ended_at": record["ended_at"], "stopped": None, "reproduce": record["reproduce"]}
    assert summary["members"] == [{"run_id": d.name, "path": f"../{d.name}", "seed": seed, "status": "completed",
                                   "passed": False} for d, seed in zip(member_dirs, (1, 2, 3), strict=True)]
    checks = summary["verdict"]["checks"]
    assert [c["threshold"] for c in checks] == list(EXPECTED)
    for c in checks:
        own = [next(x for x in s["verdict"]["checks"] if x["threshold"] == c["threshold"]) for s in subs]
        values = [x["value"] for x in own]
        assert c["values"] == values
        assert c["passed_runs"] == [x["passed"] for x in own]
        assert c["spread"] == {"min": min(values), "median": statistics.median(values), "max": max(values)}
        assert (c["outcome"], c["label"]) == EXPECTED[c["threshold"]], c
    over = {c["threshold"]: (c["over"], c["statistic"]) for c in checks if c["over"]}
    assert over == {"delivered[a]": ("median", 3), "delivered[b]": ("min", 3), "delivered": ("p90", 8)}
    verdict = {k: v for k, v in summary["verdict"].items() if k != "checks"}
    lines = [
        "STABLE FAIL: 2 of 6 thresholds failed; 1 of 6 thresholds flaky",
        "  stable pass            duplicates: 0 / 0 / 0 (min / median / max of 3 runs); max 0",
        "  flaky (2 of 3 passed)  messages_requested[a]: 1 / 3 / 5 (min / median / max of 3 runs); min 3",
        "  stable fail            messages_requested[b]: 3 / 5 / 7 (min / median / max of 3 runs); max 2",
        "  pass on median         delivered[a]: median of the runs: 3 >= min 3; 1 / 3 / 5 (min / median / max of 3 "
        "runs), 2 of 3 within",
        "  fail on min            delivered[b]: min of the runs: 3 < min 4; 3 / 5 / 7 (min / median / max of 3 runs), "
        "2 of 3 within",
        "  pass on p90            delivered: p90 of the runs: 8 >= min 8 and <= max 8; 8 / 8 / 8 (min / median / max "
        "of 3 runs), 3 of 3 within",
    ]
    assert verdict == {"outcome": "fail", "label": "stable fail", "passed": False, "exit_code": 1, "runs_passed": 0,
                       "summary": lines, "run_status": {"outcome": "pass", "text": "3 of 3 runs completed",
                                                        "statuses": ["completed"] * 3}}
    assert proc.stdout.splitlines()[-len(lines) - 3:] == [
        "repeat: 3 run(s) of 'repeat-tiny', seeds 1, 2, 3", *lines, f"combined report: {combined / 'report.html'}",
        f"reproduce: {record['reproduce']}"]

    suite = ET.fromstring((combined / "junit.xml").read_bytes())
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("maildrill.repeat-tiny", "7", "3")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"repeat_id": combined.name, "runs": "3", "seeds": "1 2 3", "stability": "stable fail",
                     "reproduce": record["reproduce"]}
    cases = [(tc.get("name"), [(f.get("type"), f.get("message")) for f in tc.findall("failure")])
             for tc in suite.iter("testcase")]
    assert cases == [
        ("run status", []), ("duplicates", []),
        ("messages_requested[a]", [("flaky", "flaky (2 of 3 passed): 1 / 3 / 5 (min / median / max of 3 runs); "
                                             "min 3")]),
        ("messages_requested[b]", [("threshold", "stable fail: 3 / 5 / 7 (min / median / max of 3 runs); max 2")]),
        ("delivered[a]", []),
        ("delivered[b]", [("threshold", "fail on min: min of the runs: 3 < min 4; 3 / 5 / 7 (min / median / max "
                                        "of 3 runs), 2 of 3 within")]),
        ("delivered", []),
    ]
    flaky = next(tc for tc in suite.iter("testcase") if tc.get("name") == "messages_requested[a]")
    assert flaky.find("failure").text.splitlines()[1:] == [  # type: ignore[union-attr]
        f"run {member_dirs[0].name} (seed 1): FAIL 1 < min 3",
        f"  reproduce: maildrill run {scenario} --seed 1",
        f"run {member_dirs[1].name} (seed 2): ok   3 >= min 3",
        f"run {member_dirs[2].name} (seed 3): ok   5 >= min 3"]
    html = (combined / "report.html").read_text()
    assert "<h1>STABLE FAIL — repeat-tiny, 3 runs</h1>" in html
    assert "<span class=flaky>flaky (2 of 3 passed)</span>" in html
    assert (combined / "figures" / "stability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (combined / "report.md").read_text()
    assert md.splitlines()[0] == "## maildrill: repeat-tiny, 3 runs — ❌ stable fail"

    # rebuilt from the member run directories alone: every member's reports from its events, then the combined ones
    before = (combined / "summary.json").read_bytes()
    for f in ("summary.json", "junit.xml", "report.html", "report.md"):
        (combined / f).unlink()
    for d in member_dirs:
        (d / "summary.json").unlink()
    again = maildrill("report", str(combined))
    assert again.returncode == 1, again.stderr
    assert again.stdout.splitlines() == [*lines, f"report: {combined / 'report.html'}"]
    assert (combined / "summary.json").read_bytes() == before
    assert all((d / "summary.json").exists() for d in member_dirs)
    index = (out / "index.html").read_text()
    assert f"<a href='{combined.name}/report.html'>" in index and "stable fail" in index
