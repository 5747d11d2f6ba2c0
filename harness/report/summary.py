"""summary.json: the machine-readable report (schema-versioned): run, verdict with every check, every metric."""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.metrics import HEADLINE
from maildrill.harness.report.run import RunInfo
from maildrill.harness.verdict import Verdict

if TYPE_CHECKING:
    from maildrill.harness.report.repeat import RepeatSet

SCHEMA = "maildrill.summary"
VERSION = 1


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def summary(info: RunInfo, analysis: Analysis, verdict: Verdict) -> dict[str, Any]:
    return _clean({
        "schema": SCHEMA, "version": VERSION,
        "run": {"run_id": info.run_id, "scenario": info.scenario_name, "description": info.description,
                "seed": info.seed, "started_at": info.started_at, "ended_at": info.ended_at, "status": info.status,
                "status_reason": info.status_reason, "degraded": list(info.degraded), "reproduce": info.reproduce,
                "time_scale": info.time_scale},
        "verdict": {"passed": verdict.passed, "exit_code": verdict.exit_code, "summary": verdict.summary_lines(),
                    "checks": [asdict(c) for c in verdict.checks]},
        "metrics": {name: analysis.metrics.get(name) for name in METRICS if name in analysis.metrics},
        "by_class": {k: dict(v) for k, v in analysis.by_class.items()},
        "by_mta": {k: dict(v) for k, v in analysis.by_mta.items()},
        "windows": [asdict(w) for w in analysis.windows],
        "load_window": list(analysis.load_window) if analysis.load_window else None,
        "ttl_s": dict(analysis.ttl_s),
        "offenders": [asdict(o) for o in analysis.offenders[:200]],
        "offenders_total": len(analysis.offenders),
        "skipped": list(analysis.skipped),
        "notes": list(analysis.notes),
    })


__all__ = ["HEADLINE", "REPEAT_SCHEMA", "SCHEMA", "VERSION", "repeat_summary", "summary"]

REPEAT_SCHEMA = "maildrill.repeat.summary"
REPEAT_VERSION = 1


def repeat_summary(rs: RepeatSet) -> dict[str, Any]:
    """The combined summary.json of a repeat set: the stability verdict, each threshold across the runs (every
    run's value and result, min / median / max, the `over` statistic), min / median / max of the headline metrics,
    and the member runs."""
    st = rs.stability
    rec = rs.record
    return _clean({
        "schema": REPEAT_SCHEMA, "version": REPEAT_VERSION,
        "repeat": {"repeat_id": rec.get("repeat_id", rs.path.name), "scenario": rs.scenario_name,
                   "description": rs.description, "scenario_file": rec.get("scenario_file"),
                   "runs_requested": st.runs_requested, "runs": st.runs, "same_seed": bool(rec.get("same_seed")),
                   "seeds": rs.seeds, "started_at": rec.get("started_at"), "ended_at": rec.get("ended_at"),
                   "stopped": st.stopped, "reproduce": rec.get("reproduce")},
        "verdict": {"outcome": st.outcome.value, "label": st.label, "passed": st.passed, "exit_code": st.exit_code,
                    "runs_passed": st.runs_passed, "summary": st.summary_lines(),
                    "run_status": {"outcome": st.status_outcome.value, "text": st.status_text(),
                                   "statuses": list(st.statuses)},
                    "checks": [{"threshold": c.threshold, "metric": c.metric, "scope": c.scope, "max": c.max,
                                "min": c.min, "over": c.over, "outcome": c.outcome.value, "label": c.label,
                                "reason": c.reason, "values": list(c.values), "passed_runs": list(c.passed_runs),
                                "runs_passed": c.runs_passed, "spread": asdict(c.spread), "statistic": c.statistic}
                               for c in st.checks]},
        "metrics": {name: asdict(sp) for name, sp in rs.spreads().items()},
        "members": [{"run_id": m.run_id, "path": str(os.path.relpath(m.path, rs.path)), "seed": m.seed,
                     "status": m.summary["run"]["status"], "passed": m.passed} for m in rs.members],
    })
