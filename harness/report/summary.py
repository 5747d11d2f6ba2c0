"""summary.json: the machine-readable report (schema-versioned): run, verdict with every check, every metric."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from maildrill.harness.analysis import METRICS, Analysis
from maildrill.harness.report.run import RunInfo
from maildrill.harness.verdict import Verdict

SCHEMA = "maildrill.summary"
VERSION = 1
HEADLINE = ("messages_requested", "delivered", "undelivered", "retry_amplification", "retry_sync_index",
            "attempts_per_s_peak", "deferred_ratio", "drain_s", "otp_expired", "otp_expired_ratio", "duplicates",
            "permanent_failures_retried", "http_error_ratio")


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
