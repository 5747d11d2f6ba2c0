"""Two runs side by side: did the fix work? Reads each run's summary.json (rebuilding it when missing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maildrill.harness.analysis import METRICS
from maildrill.harness.verdict import format_value

ROWS = ("messages_requested", "delivered", "undelivered", "attempts_total", "retry_amplification",
        "retry_sync_index", "attempts_per_s_peak", "deferred_ratio", "drain_s", "outstanding_peak", "otp_expired",
        "otp_expired_ratio", "duplicates", "permanent_failures_retried", "http_error_ratio", "latency_p99_s")


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        from maildrill.harness.report import write_reports

        write_reports(run_dir, history=False)
    return json.loads(path.read_text(encoding="utf-8"))


def _rows(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = [("verdict", "PASS" if a["verdict"]["passed"] else "FAIL", "PASS" if b["verdict"]["passed"] else "FAIL",
             "")]
    names = list(ROWS)
    for cls in sorted(set(a.get("by_class", {})) | set(b.get("by_class", {}))):
        names += [f"delivered[{cls}]", f"latency_p99_s[{cls}]", f"otp_expired[{cls}]"]
    for name in names:
        metric, _, scope = name.partition("[")
        scope = scope.rstrip("]")
        va = (a["by_class"].get(scope, {}) if scope else a["metrics"]).get(metric)
        vb = (b["by_class"].get(scope, {}) if scope else b["metrics"]).get(metric)
        info = METRICS[metric]
        rows.append((name, format_value(va, info.unit, metric), format_value(vb, info.unit, metric),
                     _judge(va, vb, info.better)))
    return rows


def _judge(a: Any, b: Any, better: str | None) -> str:
    if better is None or (a is None and b is None) or a == b:
        return ""
    if a is None:
        return "better" if better == "lower" else "worse"  # e.g. drain_s: never -> measured
    if b is None:
        return "worse" if better == "lower" else "better"
    return "better" if (b < a) == (better == "lower") else "worse"


def compare_runs(run_a: str | Path, run_b: str | Path, *, labels: tuple[str, str] | None = None,
                 fmt: str = "text") -> str:
    a, b = load_summary(run_a), load_summary(run_b)
    la, lb = labels or (a["run"]["run_id"], b["run"]["run_id"])
    rows = _rows(a, b)
    if fmt == "json":
        return json.dumps({"a": str(run_a), "b": str(run_b), "rows": [
            {"metric": r[0], "a": r[1], "b": r[2], "b_vs_a": r[3]} for r in rows]}, indent=2)
    if fmt == "md":
        out = [f"| metric | {la} | {lb} | {lb} vs {la} |", "|---|---|---|---|"]
        out += [f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
        return "\n".join(out)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(la), *(len(r[1]) for r in rows))
    w2 = max(len(lb), *(len(r[2]) for r in rows))
    out = [f"{'':<{w0}}  {la:>{w1}}  {lb:>{w2}}", f"{'':<{w0}}  {'-' * w1}  {'-' * w2}"]
    out += [f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>{w2}}  {r[3]}".rstrip() for r in rows]
    return "\n".join(out)
