"""report.html: one self-contained page (inline CSS, figures as data: URIs, no external references) that
opens offline. The verdict comes first, then what failed and why, the headline numbers, the figures, the
per-class and per-MTA tables, the messages that broke a rule, and what could not be read."""

from __future__ import annotations

import base64
import os
from html import escape
from typing import TYPE_CHECKING

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.report.figures import FIGURES
from maildrill.harness.report.run import RunInfo
from maildrill.harness.report.summary import HEADLINE
from maildrill.harness.verdict import Outcome, Verdict, format_value, limits_text

if TYPE_CHECKING:
    from maildrill.harness.report.repeat import RepeatSet

CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:1060px;margin:0 auto;padding:18px 22px 40px}
.verdict{border-radius:10px;padding:14px 20px;color:#fff;margin:6px 0 14px}
.verdict.pass{background:#1e7f4f}.verdict.fail{background:#b3261e}
.verdict h1{margin:0;font-size:28px;letter-spacing:.5px}.verdict p{margin:4px 0 0;font-size:15px;opacity:.95}
.verdict ul{margin:8px 0 0;padding-left:20px}.verdict li{margin:2px 0}
h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid #d8dde3;padding-bottom:4px}
table{border-collapse:collapse;background:#fff;font-size:14px;margin:4px 0 10px}
td,th{border:1px solid #d8dde3;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1e7f4f;font-weight:600}.bad{color:#b3261e;font-weight:700}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:8px}
.card{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:8px 10px}
.card b{display:block;font-size:20px}.card span{font-size:12px;color:#56606b;overflow-wrap:anywhere}
figure{margin:10px 0 18px;background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:6px}
figure img{width:100%;height:auto;display:block}figcaption{font-size:13px;color:#56606b;padding:2px 6px}
code{background:#eef1f4;padding:1px 4px;border-radius:4px;font-size:13px}
.meta{color:#56606b;font-size:13px}.warn{background:#fff4d6;border:1px solid #e8c66a;padding:8px 12px;border-radius:8px}
"""


def _v(value: object, unit: str = "", metric: str = "") -> str:
    return escape(format_value(value, unit, metric))  # type: ignore[arg-type]


def html_report(info: RunInfo, analysis: Analysis, verdict: Verdict, pngs: dict[str, bytes]) -> str:
    failed = verdict.failed_checks
    cls = "pass" if verdict.passed else "fail"
    word = "PASS" if verdict.passed else "FAIL"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>maildrill {escape(info.scenario_name)}: {word}</title><style>{CSS}</style></head><body><main>"]
    parts.append(f"<div class='verdict {cls}' id=verdict><h1>{word} — {escape(info.scenario_name)}</h1>"
                 f"<p>{escape(verdict.summary_lines()[0])}</p>")
    if failed:
        parts.append("<ul>" + "".join(f"<li><code style='background:rgba(255,255,255,.2);color:#fff'>"
                                      f"{escape(c.threshold)}</code> {escape(c.reason)}</li>" for c in failed)
                     + "</ul>")
    if info.status != "completed":
        parts.append(f"<p>The run is <b>{escape(info.status)}</b>: {escape(info.status_reason or '')}</p>")
    parts.append("</div>")
    parts.append(f"<p class=meta>{escape(info.description)}<br>run <code>{escape(info.run_id)}</code> · seed "
                 f"{escape(str(info.seed))} · started {escape(str(info.started_at or '?'))} · time scale "
                 f"{info.time_scale:g} (all figures in scenario time)</p>")
    # headline cards
    parts.append("<div class=cards>")
    for name in HEADLINE:
        if name in analysis.metrics:
            parts.append(f"<div class=card title='{escape(METRICS[name].description)}'>"
                         f"<b>{_v(analysis.metrics[name], METRICS[name].unit, name)}</b><span>{name}</span></div>")
    parts.append("</div>")
    if verdict.checks:
        parts.append("<h2>Thresholds</h2><table><tr><th>threshold</th><th>measured</th><th>result</th></tr>")
        for c in verdict.checks:
            mark = "<span class=ok>ok</span>" if c.passed else "<span class=bad>FAIL</span>"
            parts.append(f"<tr><td><code>{escape(c.threshold)}</code></td><td>{escape(c.reason)}</td>"
                         f"<td>{mark}</td></tr>")
        parts.append("</table>")
    if analysis.skipped:
        shown = "".join(f"<li><code>{escape(s)}</code></li>" for s in analysis.skipped[:20])
        more = f"<li>… and {len(analysis.skipped) - 20} more</li>" if len(analysis.skipped) > 20 else ""
        parts.append(f"<h2>Skipped input</h2><div class=warn>{len(analysis.skipped)} event line(s) could not be "
                     f"read and were left out of every number below:<ul>{shown}{more}</ul></div>")
    if analysis.windows:
        parts.append("<h2>Fault windows</h2><table><tr><th>target</th><th>fault</th><th>from (s)</th>"
                     "<th>to (s)</th><th>requests</th><th>HTTP errors</th><th>request p99</th></tr>")
        for w in analysis.windows:
            parts.append(f"<tr><td>{escape(w.target)}</td><td>{escape(w.what)}</td><td class=num>{w.start_s:.1f}</td>"
                         f"<td class=num>{w.end_s:.1f}</td><td class=num>{w.requests}</td>"
                         f"<td class=num>{_v(w.http_error_ratio)}</td>"
                         f"<td class=num>{_v(w.request_latency_p99_ms, 'ms')}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for name, (caption, _) in FIGURES.items():
        if name in pngs:
            data = base64.b64encode(pngs[name]).decode()
            parts.append(f"<figure id='fig-{name}'><img alt='{escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{escape(caption)} (figures/{name}.png)</figcaption></figure>")
    parts.append(_scoped_table("Per class", analysis.by_class))
    parts.append(_scoped_table("Per MTA / vendor", analysis.by_mta))
    if analysis.offenders:
        parts.append(f"<h2>Messages that broke a rule ({len(analysis.offenders)})</h2><table><tr><th>message</th>"
                     "<th>class</th><th>rule</th><th>what happened</th></tr>")
        for o in analysis.offenders[:50]:
            parts.append(f"<tr><td><code>{escape(o.corr)}</code></td><td>{escape(o.cls or '')}</td>"
                         f"<td>{escape(o.rule)}</td><td>{escape(o.detail)}</td></tr>")
        parts.append("</table>")
        if len(analysis.offenders) > 50:
            parts.append(f"<p class=meta>… {len(analysis.offenders) - 50} more in summary.json.</p>")
    parts.append("<h2>All metrics</h2><table><tr><th>metric</th><th>value</th><th>definition</th></tr>")
    for name, meta in METRICS.items():
        if name in analysis.metrics:
            parts.append(f"<tr><td><code>{name}</code></td>"
                         f"<td class=num>{_v(analysis.metrics[name], meta.unit, name)}</td>"
                         f"<td>{escape(meta.description)}</td></tr>")
    parts.append("</table>")
    for note in analysis.notes:
        parts.append(f"<p class=meta>Note: {escape(note)}</p>")
    if info.reproduce:
        parts.append(f"<h2>Reproduce</h2><p><code>{escape(info.reproduce)}</code></p>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _scoped_table(title: str, scoped: dict[str, dict[str, object]] | object) -> str:
    if not isinstance(scoped, dict) or not scoped:
        return ""
    names = [n for n in METRICS if any(n in m for m in scoped.values())]
    rows = [f"<h2>{escape(title)}</h2><table><tr><th>metric</th>"
            + "".join(f"<th>{escape(str(k))}</th>" for k in scoped) + "</tr>"]
    for n in names:
        rows.append(f"<tr><td><code>{n}</code></td>" + "".join(
            f"<td class=num>{_v(m.get(n), METRICS[n].unit, n)}</td>" for m in scoped.values()) + "</tr>")
    rows.append("</table>")
    return "".join(rows)


REPEAT_CSS = ".verdict.flaky{background:#a85d00}span.flaky{color:#a85d00;font-weight:700}td.bad{background:#fbeaea}"
_CLASS = {"pass": "ok", "fail": "bad", "flaky": "flaky"}


def html_repeat_report(rs: RepeatSet, png: bytes) -> str:
    """The combined report.html of a repeat set: the stability verdict first, then each threshold across the runs
    (min / median / max, the `over` statistic, how many runs passed), the per-run values, and the runs."""
    st = rs.stability
    outcome = st.outcome.value
    title = f"maildrill {escape(rs.scenario_name)}, {st.runs} runs: {escape(st.label)}"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>{title}</title><style>{CSS}{REPEAT_CSS}</style></head><body><main>"]
    why = st.summary_lines()[0].partition(": ")[2]  # the head without the label the h1 shows
    parts.append(f"<div class='verdict {outcome}' id=verdict><h1>{escape(st.label.upper())} — "
                 f"{escape(rs.scenario_name)}, {st.runs} runs</h1><p>{escape(why)}</p>")
    bad = [c for c in st.checks if c.outcome is not Outcome.PASS]
    if bad:
        parts.append("<ul>" + "".join(f"<li><code style='background:rgba(255,255,255,.2);color:#fff'>"
                                      f"{escape(c.threshold)}</code> {escape(c.label)}: {escape(c.reason)}</li>"
                                      for c in bad) + "</ul>")
    parts.append("</div>")
    rec = rs.record
    seeds = ", ".join(str(s) for s in rs.seeds)
    parts.append(f"<p class=meta>{escape(rs.description)}<br>repeat <code>{escape(str(rec.get('repeat_id')))}</code>"
                 f" · {st.runs} of {st.runs_requested} runs · seeds {escape(seeds)}"
                 f"{' (the same seed each run)' if rec.get('same_seed') else ''} · started "
                 f"{escape(str(rec.get('started_at') or '?'))} · {escape(st.status_text())}</p>")
    if st.checks:
        parts.append(f"<h2>Thresholds across {st.runs} runs</h2><table><tr><th>threshold</th><th>limit</th>"
                     "<th>min</th><th>median</th><th>max</th><th>statistic</th><th>runs passed</th>"
                     "<th>stability</th></tr>")
        for c in st.checks:
            unit = METRICS[c.metric].unit if c.metric in METRICS else ""
            stat = f"{c.over} {_v(c.statistic, unit, c.metric)}" if c.over else "—"
            parts.append(f"<tr><td><code>{escape(c.threshold)}</code></td><td>{escape(limits_text(c.max, c.min))}</td>"
                         + "".join(f"<td class=num>{_v(v, unit, c.metric)}</td>"
                                   for v in (c.spread.min, c.spread.median, c.spread.max))
                         + f"<td class=num>{stat}</td><td class=num>{c.runs_passed} of {st.runs}</td>"
                           f"<td><span class={_CLASS[c.outcome.value]}>{escape(c.label)}</span></td></tr>")
        parts.append("</table>")
        data = base64.b64encode(png).decode()
        parts.append("<figure id='fig-stability'><img alt='each run against each threshold' "
                     f"src='data:image/png;base64,{data}'><figcaption>Each run's value against each threshold: "
                     "green held, red failed, a cross at the top was not measured; dashed the limits, blue the "
                     "statistic a threshold is judged on (figures/stability.png)</figcaption></figure>")
    spreads = rs.spreads()
    if spreads:
        parts.append(f"<h2>Headline metrics across {st.runs} runs</h2><table><tr><th>metric</th><th>min</th>"
                     "<th>median</th><th>max</th></tr>")
        for name, sp in spreads.items():
            unit = METRICS[name].unit
            parts.append(f"<tr><td><code>{name}</code></td>" + "".join(
                f"<td class=num>{_v(v, unit, name)}</td>" for v in (sp.min, sp.median, sp.max)) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Runs</h2><table><tr><th>#</th><th>run</th><th>seed</th><th>status</th><th>verdict</th></tr>")
    for i, m in enumerate(rs.members):
        link = escape(f"{os.path.relpath(m.path, rs.path)}/report.html")
        parts.append(f"<tr><td class=num>{i + 1}</td><td><a href='{link}'>{escape(m.run_id)}</a></td>"
                     f"<td class=num>{escape(str(m.seed))}</td><td>{escape(str(m.summary['run']['status']))}</td>"
                     f"<td class={'ok' if m.passed else 'bad'}>{'PASS' if m.passed else 'FAIL'}</td></tr>")
    parts.append("</table>")
    if st.checks:
        parts.append("<h2>Each run's value</h2><table><tr><th>threshold</th>"
                     + "".join(f"<th>run {i + 1}</th>" for i in range(st.runs)) + "</tr>")
        for c in st.checks:
            unit = METRICS[c.metric].unit if c.metric in METRICS else ""
            parts.append(f"<tr><td><code>{escape(c.threshold)}</code></td>" + "".join(
                f"<td class='num{'' if ok else ' bad'}'>{_v(v, unit, c.metric)}</td>"
                for v, ok in zip(c.values, c.passed_runs, strict=True)) + "</tr>")
        parts.append("</table><p class=meta>Red: the run's own check failed (for a threshold judged on a statistic "
                     "across runs that alone does not fail it).</p>")
    if st.stopped:
        parts.append(f"<div class=warn>Stopped after {st.runs} of {st.runs_requested} runs: {escape(st.stopped)}</div>")
    if rec.get("reproduce"):
        parts.append(f"<h2>Reproduce</h2><p><code>{escape(str(rec['reproduce']))}</code></p>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
