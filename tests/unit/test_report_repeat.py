"""A repeat set's combined reports, built from member run directories alone (synthetic event logs, no drill): the
stability verdict in summary.json and JUnit, the history index, and what a damaged set says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from maildrill.harness.errors import UsageError
from maildrill.harness.report import write_repeat_reports
from maildrill.harness.report.repeat import add_member, repeat_record, write_record
from test_report_files import make_run

THRESHOLDS = {"duplicates": {"max": 0}, "delivered": {"min": 3}, "latency_p99_s[otp]": {"max": 30, "over": "median"}}


def make_set(root: Path, statuses: tuple[str, ...] = ("completed", "degraded", "completed")) -> Path:
    combined = root / "20261124-120000-demo-s1-repeat"
    combined.mkdir(parents=True)
    record = repeat_record(repeat_id=combined.name, scenario="demo", scenario_file="demo.yaml",
                           runs_requested=len(statuses), same_seed=False, seed=1,
                           started_at="2026-11-24T12:00:00+00:00",
                           reproduce="maildrill run demo.yaml --seed 1 --repeat 3")
    write_record(combined, record)
    for i, status in enumerate(statuses):
        run = make_run(root, f"20261124-12000{i}-demo-s{1 + i}", thresholds=THRESHOLDS, status=status)
        add_member(combined, record, run, 1 + i)
    return combined


def test_the_combined_reports_of_a_set_with_a_degraded_run(tmp_path: Path) -> None:
    combined = make_set(tmp_path / "reports")
    rs = write_repeat_reports(combined)
    summary = json.loads((combined / "summary.json").read_text())
    verdict = summary["verdict"]
    assert {k: verdict[k] for k in ("outcome", "label", "passed", "exit_code", "runs_passed")} == {
        "outcome": "fail", "label": "stable fail", "passed": False, "exit_code": 1, "runs_passed": 0}
    assert verdict["run_status"] == {"outcome": "flaky", "text": "2 of 3 runs completed (1 degraded)",
                                     "statuses": ["completed", "degraded", "completed"]}
    assert [(c["threshold"], c["label"], c["values"], c["spread"], c["statistic"]) for c in verdict["checks"]] == [
        ("duplicates", "stable fail", [1, 1, 1], {"min": 1, "median": 1, "max": 1}, None),
        ("delivered", "stable pass", [3, 3, 3], {"min": 3, "median": 3, "max": 3}, None),
        ("latency_p99_s[otp]", "pass on median", [2.5003] * 3, {"min": 2.5003, "median": 2.5003, "max": 2.5003},
         2.5003)]
    assert verdict["summary"] == rs.stability.summary_lines()
    assert {k: summary["metrics"][k] for k in ("delivered", "duplicates", "retry_amplification")} == {
        "delivered": {"min": 3, "median": 3, "max": 3}, "duplicates": {"min": 1, "median": 1, "max": 1},
        "retry_amplification": {"min": 1.75, "median": 1.75, "max": 1.75}}
    assert verdict["summary"][0] == ("STABLE FAIL: 1 of 3 thresholds failed; 2 of 3 runs completed (1 degraded)")
    assert [(m["run_id"], m["path"], m["seed"], m["status"]) for m in summary["members"]] == [
        ("20261124-120000-demo-s1", "../20261124-120000-demo-s1", 1, "completed"),
        ("20261124-120001-demo-s2", "../20261124-120001-demo-s2", 2, "degraded"),
        ("20261124-120002-demo-s3", "../20261124-120002-demo-s3", 3, "completed")]

    suite = ET.fromstring((combined / "junit.xml").read_bytes())
    cases = [(tc.get("name"), [(f.get("type"), f.get("message")) for f in tc.findall("failure")])
             for tc in suite.iter("testcase")]
    assert cases == [
        ("run status", [("flaky", "2 of 3 runs completed (1 degraded)")]),
        ("duplicates", [("threshold", "stable fail: 1 / 1 / 1 (min / median / max of 3 runs); max 0")]),
        ("delivered", []), ("latency_p99_s[otp]", [])]
    status_case = next(suite.iter("testcase"))
    assert status_case.find("failure").text == "run 20261124-120001-demo-s2 (seed 2): degraded: the SUT died"  # type: ignore[union-attr]

    # the history index keeps listing the runs, and lists the set on its own
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "3 run(s) in" in index
    assert (f"<a href='{combined.name}/report.html'>2026-11-24T12:00:00+00:00</a></td><td>demo</td>"
            "<td class=num>3</td><td>1 2 3</td><td class=bad>stable fail</td>") in index


def test_maildrill_report_rebuilds_a_set_from_its_members(tmp_path: Path) -> None:
    combined = make_set(tmp_path, ("completed", "completed"))
    proc = subprocess.run([sys.executable, "-m", "maildrill", "report", str(combined), "--no-history"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        "STABLE FAIL: 1 of 3 thresholds failed",
        "  stable fail     duplicates: 1 / 1 / 1 (min / median / max of 2 runs); max 0",
        "  stable pass     delivered: 3 / 3 / 3 (min / median / max of 2 runs); min 3",
        "  pass on median  latency_p99_s[otp]: median of the runs: 2.5 s <= max 30; 2.5 s / 2.5 s / 2.5 s (min / "
        "median / max of 2 runs), 2 of 2 within",
        f"report: {combined / 'report.html'}"]
    assert not (tmp_path / "index.html").exists()


def test_a_damaged_set_says_what_is_wrong(tmp_path: Path) -> None:
    combined = make_set(tmp_path)
    shutil.rmtree(tmp_path / "20261124-120001-demo-s2")
    with pytest.raises(UsageError) as info:
        write_repeat_reports(combined)
    assert str(info.value) == (
        f"{combined / 'repeat.json'}: member run '20261124-120001-demo-s2' is missing (looked in "
        f"{combined / '../20261124-120001-demo-s2'}); the combined report is built from the member run directories")

    other = make_set(tmp_path / "other")
    third = tmp_path / "other" / "20261124-120002-demo-s3" / "scenario.json"
    scenario = json.loads(third.read_text())
    third.write_text(json.dumps({**scenario, "thresholds": {"duplicates": {"max": 1}}}))
    with pytest.raises(UsageError, match="its thresholds differ from the first member's; a repeat set is one scenario"):
        write_repeat_reports(other)

    (other / "repeat.json").write_text(json.dumps({"schema": "maildrill.repeat", "version": 9, "members": []}))
    with pytest.raises(UsageError) as info:
        write_repeat_reports(other)
    assert str(info.value) == f"{other / 'repeat.json'}: repeat record version 9; this maildrill reads 1"


def test_repeat_flags_are_checked_before_anything_runs() -> None:
    def run(*args: str) -> tuple[int, str]:
        p = subprocess.run([sys.executable, "-m", "maildrill", "run", "no-such.yaml", *args], capture_output=True,
                           text=True, timeout=60, check=False)
        return p.returncode, p.stderr.strip()

    assert run("--same-seed") == (2, "maildrill run: --same-seed needs --repeat N (it sets the seed of every "
                                     "repeated run)")
    assert run("--repeat", "0") == (2, "maildrill run: --repeat 0: must be 1 to 1000 (the number of runs)")


def test_compare_refuses_a_repeat_set_with_the_way_out(tmp_path: Path) -> None:
    combined = make_set(tmp_path, ("completed",))
    p = subprocess.run([sys.executable, "-m", "maildrill", "compare", str(combined),
                        str(tmp_path / "20261124-120000-demo-s1")], capture_output=True, text=True, timeout=60,
                       check=False)
    assert (p.returncode, p.stderr.strip()) == (2, (
        f"maildrill compare: {combined}: a repeat set (the combined directory of `maildrill run --repeat N`), not one "
        "run; give one of its member runs, named in its repeat.json, or open its report.html"))
