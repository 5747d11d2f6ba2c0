"""Reports, rebuilt from a run directory alone: summary.json, report.html, report.md, junit.xml, figures/*.png,
and the rehearsal history (the reports root's index.html)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maildrill.harness.verdict import Verdict

if TYPE_CHECKING:
    from maildrill.harness.report.repeat import RepeatSet


def write_reports(run_dir: str | Path, *, history: bool = True) -> Verdict:
    """Analyse the run, write every report into it, rebuild the history index of its parent; the verdict."""
    from maildrill.harness.report.run import analyse_run

    info, analysis, verdict = analyse_run(run_dir)
    # matplotlib (~30 MB) only once the analysis is done and its records freed: not on top of a big run's peak
    from maildrill.harness.report.figures import render_all
    from maildrill.harness.report.history import write_index
    from maildrill.harness.report.html import html_report
    from maildrill.harness.report.junit import junit_xml
    from maildrill.harness.report.markdown import markdown
    from maildrill.harness.report.summary import summary

    path = info.path
    pngs = render_all(analysis, path / "figures")
    write_atomic(path / "summary.json", json.dumps(summary(info, analysis, verdict), indent=2) + "\n")
    write_atomic(path / "report.md", markdown(info, analysis, verdict))
    (path / "junit.xml").write_bytes(junit_xml(info, verdict))
    write_atomic(path / "report.html", html_report(info, analysis, verdict, pngs))
    if history and path.parent != path:
        write_index(path.parent)
    return verdict


def write_repeat_reports(combined: str | Path, *, rebuild_members: bool = False, history: bool = True) -> RepeatSet:
    """summary.json, report.md, junit.xml, report.html and figures/stability.png of a repeat set, into its
    directory; then the history index of its parent. Each member's own reports are rebuilt first with
    `rebuild_members`, else only where a member has no summary.json. Returns the set (with its stability
    verdict)."""
    from maildrill.harness.report.figures import stability_png
    from maildrill.harness.report.history import write_index
    from maildrill.harness.report.html import html_repeat_report
    from maildrill.harness.report.junit import junit_repeat_xml
    from maildrill.harness.report.markdown import markdown_repeat
    from maildrill.harness.report.repeat import read_member_summary, read_repeat
    from maildrill.harness.report.summary import repeat_summary

    def member_summary(path: Path) -> dict[str, Any]:
        if rebuild_members or not (path / "summary.json").exists():
            write_reports(path, history=False)
        return read_member_summary(path)

    rs = read_repeat(combined, member_summary=member_summary)
    png = stability_png(rs.stability)
    (rs.path / "figures").mkdir(exist_ok=True)
    (rs.path / "figures" / "stability.png").write_bytes(png)
    write_atomic(rs.path / "summary.json", json.dumps(repeat_summary(rs), indent=2) + "\n")
    write_atomic(rs.path / "report.md", markdown_repeat(rs))
    (rs.path / "junit.xml").write_bytes(junit_repeat_xml(rs))
    write_atomic(rs.path / "report.html", html_repeat_report(rs, png))
    if history and rs.path.parent != rs.path:
        write_index(rs.path.parent)
    return rs


def write_atomic(path: Path, text: str) -> None:
    """Readers (a CI job, the history index) never see half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = ["write_atomic", "write_repeat_reports", "write_reports"]
