"""report.md: the verdict and headline numbers for a CI job summary or a pull-request comment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.report.run import RunInfo
from maildrill.harness.report.summary import HEADLINE
from maildrill.harness.verdict import Verdict, format_value, limits_text

if TYPE_CHECKING:
    from maildrill.harness.report.repeat import RepeatSet


def markdown(info: RunInfo, analysis: Analysis, verdict: Verdict) -> str:
    head = "PASS" if verdict.passed else "FAIL"
    out = [f"## maildrill: {info.scenario_name} — {'✅' if verdict.passed else '❌'} {head}", ""]
    if info.description:
        out += [f"_{info.description}_", ""]
    out += [f"{verdict.summary_lines()[0]}. Run `{info.run_id}`, seed {info.seed}, status **{info.status}**.", ""]
    if verdict.checks:
        out += ["| threshold | measured | result |", "|---|---|---|"]
        for c in verdict.checks:
            out.append(f"| `{c.threshold}` | {c.reason} | {'ok' if c.passed else '**FAIL**'} |")
        out.append("")
    out += ["| metric | value |", "|---|---|"]
    for name in HEADLINE:
        if name in analysis.metrics:
            out.append(f"| `{name}` | {format_value(analysis.metrics[name], METRICS[name].unit, name)} |")
    if analysis.by_class:
        out += ["", "| class | requested | delivered | p99 latency | expired |", "|---|---|---|---|---|"]
        for cls, m in analysis.by_class.items():
            out.append(f"| {cls} | {m.get('messages_requested')} | {m.get('delivered')} | "
                       f"{format_value(m.get('latency_p99_s'), 's', 'latency_p99_s')} | "
                       f"{format_value(m.get('otp_expired'))} |")
    if analysis.skipped:
        out += ["", f"⚠️ {len(analysis.skipped)} event line(s) could not be read and were skipped, first: "
                    f"`{analysis.skipped[0]}`"]
    if info.reproduce:
        out += ["", f"Reproduce: `{info.reproduce}`"]
    return "\n".join(out) + "\n"


_MARK = {"pass": "✅", "fail": "❌", "flaky": "⚠️"}


def markdown_repeat(rs: RepeatSet) -> str:
    """The combined report.md of a repeat set: the stability verdict, each threshold across the runs, the runs."""
    st = rs.stability
    out = [f"## maildrill: {rs.scenario_name}, {st.runs} runs — {_MARK[st.outcome.value]} {st.label}", ""]
    if rs.description:
        out += [f"_{rs.description}_", ""]
    seeds = ", ".join(str(s) for s in rs.seeds)
    out += [f"{st.summary_lines()[0]}. Repeat `{rs.record.get('repeat_id', rs.path.name)}`, seeds {seeds}; "
            f"{st.status_text()}.", ""]
    if st.checks:
        out += ["| threshold | min | median | max | limit | runs passed | stability |", "|---|---|---|---|---|---|---|"]
        for c in st.checks:
            unit = METRICS[c.metric].unit if c.metric in METRICS else ""
            mn, md, mx = (format_value(v, unit, c.metric) for v in (c.spread.min, c.spread.median, c.spread.max))
            limit = limits_text(c.max, c.min)
            if c.over:
                limit += f" on {c.over} ({format_value(c.statistic, unit, c.metric)})"
            shown = c.label if c.outcome.value == "pass" else f"**{c.label}**"
            out.append(f"| `{c.threshold}` | {mn} | {md} | {mx} | {limit} | {c.runs_passed} of {st.runs} | {shown} |")
        out.append("")
    out += ["| run | seed | status | verdict |", "|---|---|---|---|"]
    for m in rs.members:
        out.append(f"| `{m.run_id}` | {m.seed} | {m.summary['run']['status']} | {'PASS' if m.passed else 'FAIL'} |")
    if rs.record.get("reproduce"):
        out += ["", f"Reproduce: `{rs.record['reproduce']}`"]
    return "\n".join(out) + "\n"
