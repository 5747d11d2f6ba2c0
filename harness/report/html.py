"""report.html: one self-contained page (inline CSS, figures as data: URIs, no external references) that
opens offline. The verdict comes first, then what failed and why, the headline numbers, the figures, the
per-class and per-MTA tables, the messages that broke a rule, and what could not be read."""

from __future__ import annotations

import base64
from html import escape

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.report.figures import FIGURES
from maildrill.harness.report.run import RunInfo
from maildrill.harness.report.summary import HEADLINE
from maildrill.harness.verdict import Verdict, format_value

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
