"""reports/index.html: every run under a reports directory, newest first, and each scenario's headline metrics
across its runs — so a team that rehearses monthly sees whether it got better."""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from maildrill.harness.analysis import METRICS
from maildrill.harness.report.html import CSS
from maildrill.harness.verdict import format_value

TREND = ("retry_amplification", "retry_sync_index", "drain_s", "otp_expired_ratio", "duplicates",
         "permanent_failures_retried")


def _summaries(root: Path, schema: str) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for d in root.iterdir() if root.is_dir() else []:
        s = d / "summary.json"
        if d.is_dir() and s.exists():
            try:
                data = json.loads(s.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("schema", "maildrill.summary") == schema:
                out.append((d, data))
    return out


def _runs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The single runs (a repeat set's combined directory is listed on its own; its members are runs)."""
    out = _summaries(root, "maildrill.summary")
    out.sort(key=lambda r: (r[1]["run"].get("started_at") or "", r[0].name))
    return out


def _repeat_sets(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = _summaries(root, "maildrill.repeat.summary")
    out.sort(key=lambda r: (r[1]["repeat"].get("started_at") or "", r[0].name))
    return out


def _spark(values: list[float | None], better: str | None) -> str:
    pts = [v for v in values if v is not None]
    if len(pts) < 2:
        return ""
    lo, hi = min(pts), max(pts)
    span = (hi - lo) or 1.0
    w, h = 90, 22
    coords = []
    n = len(values)
    for i, v in enumerate(values):
        if v is not None:
            coords.append(f"{2 + i * (w - 4) / max(1, n - 1):.1f},{h - 3 - (v - lo) / span * (h - 6):.1f}")
    last, first = pts[-1], pts[0]
    good = last == first or ((last < first) == (better == "lower")) if better else True
    color = "#1e7f4f" if good else "#b3261e"
    return (f"<svg width={w} height={h} viewBox='0 0 {w} {h}' role=img aria-label=trend>"
            f"<polyline fill=none stroke='{color}' stroke-width=1.6 points='{' '.join(coords)}'/></svg>")


def write_index(root: str | Path) -> Path:
    root = Path(root)
    runs = _runs(root)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>maildrill rehearsals</title>"
             f"<style>{CSS}</style></head><body><main><h1>maildrill rehearsal history</h1>"
             f"<p class=meta>{len(runs)} run(s) in {escape(str(root))}. Rebuilt after every run and by "
             f"<code>maildrill history</code>.</p>"]
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, s in runs:
        by_scenario[s["run"]["scenario"]].append(s)
    if by_scenario:
        parts.append("<h2>Trends per scenario (oldest → newest)</h2><table><tr><th>scenario</th><th>runs</th>"
                     "<th>passed</th>" + "".join(f"<th>{m}</th>" for m in TREND) + "</tr>")
        for name, items in sorted(by_scenario.items()):
            cells = []
            for m in TREND:
                vals = [i["metrics"].get(m) for i in items]
                shown = escape(format_value(vals[-1], METRICS[m].unit, m))
                cells.append(f"<td>{shown} {_spark(vals, METRICS[m].better)}</td>")
            passed = sum(1 for i in items if i["verdict"]["passed"])
            parts.append(f"<tr><td>{escape(name)}</td><td class=num>{len(items)}</td><td class=num>{passed}</td>"
                         + "".join(cells) + "</tr>")
        parts.append("</table>")
    sets = _repeat_sets(root)
    if sets:
        parts.append("<h2>Repeat sets (newest first)</h2><table><tr><th>started</th><th>scenario</th><th>runs</th>"
                     "<th>seeds</th><th>stability</th></tr>")
        for d, s in reversed(sets):
            r, v = s["repeat"], s["verdict"]
            cls = {"pass": "ok", "fail": "bad"}.get(v["outcome"], "bad")
            parts.append(f"<tr><td><a href='{escape(d.name)}/report.html'>{escape(str(r.get('started_at') or d.name))}"
                         f"</a></td><td>{escape(str(r['scenario']))}</td><td class=num>{r['runs']}</td>"
                         f"<td>{escape(' '.join(str(x) for x in r['seeds']))}</td>"
                         f"<td class={cls}>{escape(v['label'])}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Runs (newest first)</h2><table><tr><th>started</th><th>scenario</th><th>verdict</th>"
                 "<th>delivered</th><th>amplification</th><th>sync index</th><th>drain</th><th>expired</th>"
                 "<th>duplicates</th></tr>")
    for d, s in reversed(runs):
        m = s["metrics"]
        ok = s["verdict"]["passed"]
        link = f"{escape(d.name)}/report.html"
        parts.append(
            f"<tr><td><a href='{link}'>{escape(str(s['run'].get('started_at') or d.name))}</a></td>"
            f"<td>{escape(s['run']['scenario'])}<br><span class=meta>{escape(s['run'].get('description') or '')}"
            f"</span></td><td class={'ok' if ok else 'bad'}>{'PASS' if ok else 'FAIL'}</td>"
            f"<td class=num>{m.get('delivered')}/{m.get('messages_requested')}</td>"
            f"<td class=num>{escape(format_value(m.get('retry_amplification')))}</td>"
            f"<td class=num>{escape(format_value(m.get('retry_sync_index')))}</td>"
            f"<td class=num>{escape(format_value(m.get('drain_s'), 's', 'drain_s'))}</td>"
            f"<td class=num>{escape(format_value(m.get('otp_expired')))}</td>"
            f"<td class=num>{escape(format_value(m.get('duplicates')))}</td></tr>")
    parts.append("</table></main></body></html>\n")
    out = root / "index.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text("".join(parts), encoding="utf-8")
    tmp.replace(out)
    return out
