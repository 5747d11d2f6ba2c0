"""junit.xml: one test case per threshold (CI systems show each as a test), plus the run's status."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from maildrill.harness.report.run import RunInfo
from maildrill.harness.verdict import Verdict


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
