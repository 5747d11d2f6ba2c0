"""junit.xml: one test case per threshold (CI systems show each as a test), plus the run's status; for a repeat set,
each threshold across the runs, a flaky one being its own failure type."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from maildrill.harness.report.run import RunInfo
from maildrill.harness.verdict import Outcome, Verdict

if TYPE_CHECKING:
    from maildrill.harness.report.repeat import RepeatSet


def junit_xml(info: RunInfo, verdict: Verdict) -> bytes:
    classname = f"maildrill.{info.scenario_name}"
    suite = ET.Element("testsuite", name=classname, tests=str(len(verdict.checks) + 1), errors="0")
    props = ET.SubElement(suite, "properties")
    for k, v in (("run_id", info.run_id), ("seed", info.seed), ("reproduce", info.reproduce)):
        ET.SubElement(props, "property", name=k, value="" if v is None else str(v))
    failures = 0
    status = ET.SubElement(suite, "testcase", classname=classname, name="run status")
    if info.status != "completed":
        failures += 1
        ET.SubElement(status, "failure", message=f"the run is {info.status}",
                      type="run_status").text = info.status_reason or info.status
    for c in verdict.checks:
        case = ET.SubElement(suite, "testcase", classname=classname, name=c.threshold)
        if not c.passed:
            failures += 1
            ET.SubElement(case, "failure", message=c.reason, type="threshold").text = (
                f"{c.threshold}: {c.reason}\nreproduce: {info.reproduce or '-'}")
    suite.set("failures", str(failures))
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def junit_repeat_xml(rs: RepeatSet) -> bytes:
    """One test case per threshold across the runs, plus the runs' status. A threshold that failed in every run
    (or whose `over` statistic failed) is ``<failure type="threshold">``: the system broke; one that held in some
    runs only is ``<failure type="flaky">``: the verdict of one run is noise."""
    st = rs.stability
    classname = f"maildrill.{rs.scenario_name}"
    suite = ET.Element("testsuite", name=classname, tests=str(len(st.checks) + 1), errors="0")
    props = ET.SubElement(suite, "properties")
    for k, v in (("repeat_id", rs.record.get("repeat_id", rs.path.name)), ("runs", st.runs),
                 ("seeds", " ".join(str(s) for s in rs.seeds)), ("stability", st.label),
                 ("reproduce", rs.record.get("reproduce"))):
        ET.SubElement(props, "property", name=k, value="" if v is None else str(v))
    failures = 0
    status = ET.SubElement(suite, "testcase", classname=classname, name="run status")
    if st.status_outcome is not Outcome.PASS or st.stopped:
        failures += 1
        kind = "flaky" if st.status_outcome is Outcome.FLAKY else "run_status"
        lines = [f"run {m.run_id} (seed {m.seed}): {m.summary['run']['status']}"
                 + (f": {m.summary['run']['status_reason']}" if m.summary["run"].get("status_reason") else "")
                 for m in rs.members if m.summary["run"]["status"] != "completed"]
        if st.stopped:
            lines.append(f"stopped after {st.runs} of {st.runs_requested} runs: {st.stopped}")
        ET.SubElement(status, "failure", message=st.status_text(), type=kind).text = "\n".join(lines)
    for c in st.checks:
        case = ET.SubElement(suite, "testcase", classname=classname, name=c.threshold)
        if c.outcome is Outcome.PASS:
            continue
        failures += 1
        lines = [f"{c.threshold}: {c.label}: {c.reason}"]
        for m, ok in zip(rs.members, c.passed_runs, strict=True):
            own = next((x for x in m.summary["verdict"]["checks"] if x["threshold"] == c.threshold), None)
            lines.append(f"run {m.run_id} (seed {m.seed}): {'ok  ' if ok else 'FAIL'} "
                         f"{own['reason'] if own else 'no such check in this run'}")
            if not ok and m.summary["run"].get("reproduce"):
                lines.append(f"  reproduce: {m.summary['run']['reproduce']}")
        ET.SubElement(case, "failure", message=f"{c.label}: {c.reason}",
                      type="flaky" if c.outcome is Outcome.FLAKY else "threshold").text = "\n".join(lines)
    suite.set("failures", str(failures))
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)
