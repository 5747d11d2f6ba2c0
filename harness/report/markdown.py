"""report.md: the verdict and headline numbers for a CI job summary or a pull-request comment."""

from __future__ import annotations

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.report.run import RunInfo
from maildrill.harness.report.summary import HEADLINE
from maildrill.harness.verdict import Verdict, format_value


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
