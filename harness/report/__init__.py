"""Reports, rebuilt from a run directory alone: summary.json, report.html, report.md, junit.xml, figures/*.png,
and the rehearsal history (the reports root's index.html)."""

from __future__ import annotations

import json
from pathlib import Path

from maildrill.harness.verdict import Verdict


def write_reports(run_dir: str | Path, *, history: bool = True) -> Verdict:
    """Analyse the run, write every report into it, rebuild the history index of its parent; the verdict."""
    from maildrill.harness.report.figures import render_all
    from maildrill.harness.report.history import write_index
    from maildrill.harness.report.html import html_report
    from maildrill.harness.report.junit import junit_xml
    from maildrill.harness.report.markdown import markdown
    from maildrill.harness.report.run import analyse_run
    from maildrill.harness.report.summary import summary

    info, analysis, verdict = analyse_run(run_dir)
    path = info.path
    pngs = render_all(analysis, path / "figures")
    write_atomic(path / "summary.json", json.dumps(summary(info, analysis, verdict), indent=2) + "\n")
    write_atomic(path / "report.md", markdown(info, analysis, verdict))
    (path / "junit.xml").write_bytes(junit_xml(info, verdict))
    write_atomic(path / "report.html", html_report(info, analysis, verdict, pngs))
    if history and path.parent != path:
        write_index(path.parent)
    return verdict


def write_atomic(path: Path, text: str) -> None:
    """Readers (a CI job, the history index) never see half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["write_atomic", "write_reports"]
