"""Fault windows: when each timeline action was in force, and the app side (requests, errors, latency) inside
them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from maildrill.harness.analysis.columns import Columns, Flags, Floats, percentiles
from maildrill.harness.analysis.join import Attempts, FaultAction
from maildrill.harness.analysis.model import FaultWindow

CLEARS = ("set accept", "enable")  # actions that end a fault rather than start one


def windows(fired: Sequence[FaultAction], undone: Mapping[int, float], end: float) -> list[FaultWindow]:
    """From each action's firing to its undoing, or to the next action on the same target (a later set replaces
    an MTA's or a vendor's behaviours; an enable ends a disable), or to `end`."""
    ordered = sorted(fired, key=lambda f: (f.t, f.action, f.target, f.what))
    out = []
    for i, f in enumerate(ordered):
        if f.what in CLEARS:
            continue
        stop = undone.get(f.action, end)
        for later in ordered[i + 1:]:
            if later.target != f.target:
                continue
            if f.target.startswith(("mta/", "vendor/")) or (f.what == "disable" and later.what == "enable"):
                stop = min(stop, later.t)
                break
        out.append(FaultWindow(f.target, f.what, f.t, max(f.t, stop)))
    return out


def error_ratio(failed: Flags) -> float | None:
    """The share of requests that failed (`failed`: one flag per request)."""
    return int(np.count_nonzero(failed)) / len(failed) if len(failed) else None


def inside(w: FaultWindow, times: Floats) -> Flags:
    """Which requests (`times`) fell inside the window."""
    return (w.start_s <= times) & (times <= w.end_s)


def with_app_side(w: FaultWindow, c: Columns) -> FaultWindow:
    mine = inside(w, c.req_t)
    return dataclasses.replace(w, requests=int(np.count_nonzero(mine)), http_error_ratio=error_ratio(~c.req_ok[mine]),
                               request_latency_p99_ms=percentiles(c.req_latency[mine], 99)[0])


def storm_start(ws: Sequence[FaultWindow], attempts: Attempts) -> float | None:
    """When the first fault began; with no timeline, when the first attempt was deferred (4xx)."""
    start = min((w.start_s for w in ws), default=None)
    if start is None:
        start = min((end for end, o in zip(attempts.ends, attempts.outcomes(), strict=True) if o == "4xx"),
                    default=None)
    return start
