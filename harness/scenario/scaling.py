"""time_scale: the scenario (scenario time, as written) → the run (real seconds), for drills replayed faster."""

from __future__ import annotations

from typing import Any

from maildrill.harness.scenario.models import ActionSpec, Scenario

# behaviour / shape / toxic fields that are durations (multiplied) or rates (divided)
_DURATIONS = {"min_delay_s", "retry_window_s", "whitelist_s", "delay_s", "at_s", "start_s", "hold_s", "ramp_s",
              "for_s", "ttl_s", "resend_after_s", "timeout_s"}
_RATES = {"rate_per_s", "rps", "base_rps", "peak_rps", "from_rps", "to_rps"}
_TOXIC_MS = {"latency", "jitter", "timeout", "delay"}


def _scale(obj: Any, k: float) -> Any:
    if isinstance(obj, dict):
        return {key: (_scale_value(key, v, k)) for key, v in obj.items()}
    if isinstance(obj, list):
        return [_scale(v, k) for v in obj]
    return obj


def _scale_value(key: str, v: Any, k: float) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        if key in _DURATIONS:
            return v * k
        if key in _RATES:
            return v / k
        return v
    return _scale(v, k)


def scaled(scenario: Scenario) -> Scenario:
    """The same drill with every scenario duration multiplied by `time_scale` (and every rate divided by it).

    Infrastructure waits (SUT readiness, per-request timeouts, stop grace) stay in real seconds.
    Returns the scenario unchanged when time_scale is 1; the result has time_scale 1 (it is run time).
    """
    k = scenario.time_scale
    if k == 1:
        return scenario
    d = scenario.to_plain()
    sut = d.pop("sut", None)
    load_timeout = d["load"].pop("timeout_s", None)
    out = _scale(d, k)
    out["duration_s"] = d["duration_s"] * k
    out["drain_timeout_s"] = d["drain_timeout_s"] * k
    for action in out.get("timeline", []):
        toxic = action.get("toxic")
        if toxic:
            # Toxiproxy's attributes are whole milliseconds (microseconds for slicer delay)
            toxic["attributes"] = {a: (round(v * k) if a in _TOXIC_MS else v)
                                   for a, v in toxic.get("attributes", {}).items()}
    for v_in, v_out in zip(d.get("vendors", []), out.get("vendors", []), strict=True):
        if v_in.get("webhooks"):  # lags and retry intervals scale by the webhooks' own factor; timeout_s is the SUT's
            wh = v_in["webhooks"]
            v_out["webhooks"] = {**wh, "time_scale": wh.get("time_scale", 1.0) * k}
    out["time_scale"] = 1.0
    if sut is not None:
        out["sut"] = sut
    if load_timeout is not None:
        out["load"]["timeout_s"] = load_timeout
    return Scenario.model_validate(out)


def action_label(action: ActionSpec) -> str:
    """What an action does, in a few words (for events and the status line)."""
    if action.mta is not None or action.vendor is not None:
        kinds = ",".join(b.kind + (f"({b.mode})" if b.kind == "go_dark" else "") for b in action.set or [])
        return f"set {kinds or '[]'}"
    if action.sut is not None:
        return "crash (kill -9)"
    if action.toxic is not None:
        return f"toxic {action.toxic.type} {action.toxic.stream}"
    return "enable" if action.enabled else "disable"
