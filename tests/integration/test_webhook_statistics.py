"""Lag, loss and duplicate rates measured from the events of 1,200 webhooks equal the configured ones within
sampling error. Seeded (seed 0), so the draws are the same on every run (the lags' timing varies by a few ms).

The tests: loss and duplicate counts inside the binomial's 99.9 % interval (normal approximation, z = 3.29:
n·p ± 3.29·sqrt(n·p·(1-p))); the first-attempt lags (acceptance → mta.webhook.sent, / time_scale) against the
configured log-normal by a one-sample Kolmogorov-Smirnov test at alpha = 0.001 (D < 1.949 / sqrt(n)); the median
lag the analysis reports (acceptance → first 2xx answer) inside the 99.9 % interval of a sample median.
"""

from __future__ import annotations

import asyncio
import math

import aiohttp
import pytest
from maildrill.harness.analysis.webhooks import webhook_metrics
from maildrill.harness.events import Event
from webhook_support import Receiver, make_vendor, send, wait_for

N = 1200
LOSS, DUP = 0.05, 0.02
MEDIAN_S, SIGMA = 20.0, 0.5
SCALE = 0.25  # a 20 s median lag in 5 s of real time
Z = 3.29  # two-sided 99.9 %


def interval(n: int, p: float) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - Z * sd, n * p + Z * sd


def lognormal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf((math.log(x) - math.log(MEDIAN_S)) / (SIGMA * math.sqrt(2))))


@pytest.mark.slow  # ~30 s: the lags are real time (time_scale 0.25), kept long enough to be measured exactly
def test_loss_duplicate_and_lag_match_the_configuration_over_1200_webhooks():
    async def main():
        async with Receiver() as rx:
            v = make_vendor("sendgrid", {"url": rx.url + "/h", "events": ["delivered"], "loss": LOSS,
                                         "duplicate": DUP, "time_scale": SCALE,
                                         "lag_s": {"distribution": "lognormal", "median_s": MEDIAN_S,
                                                   "sigma": SIGMA}}, seed=0)
            async with v, aiohttp.ClientSession() as s:
                for i in range(0, N, 600):
                    await send(s, v, [f"u{j}@users.test" for j in range(i, i + 600)])
                evs = v.recorder.events
                dropped = lambda: sum(e["kind"] == "mta.webhook.dropped" for e in evs)  # noqa: E731
                answered = lambda: sum(e["kind"] == "mta.webhook.answered" for e in evs)  # noqa: E731
                sent_copies = lambda: sum(e["kind"] == "mta.webhook.sent" for e in evs)  # noqa: E731
                await wait_for(lambda: not v.webhooks._pending and answered() == sent_copies(), 120,
                               what="every webhook answered")
            return v, rx, dropped()

    v, rx, _ = asyncio.run(main())
    evs = v.recorder.events
    accepted = {(e["message_id"], e["rcpt"]): e["t_s"] for e in evs if e["kind"] == "mta.message.accepted"}
    assert len(accepted) == N
    lost = [e for e in evs if e["kind"] == "mta.webhook.dropped"]
    assert {e["reason"] for e in lost} == {"loss"}
    firsts = [e for e in evs if e["kind"] == "mta.webhook.sent" and e["copy"] == 0]
    copies = [e for e in evs if e["kind"] == "mta.webhook.sent" and e["copy"] == 1]
    assert len(firsts) + len(lost) == N  # one delivered event per message: sent once, or lost
    assert all(e["attempt"] == 1 for e in firsts + copies)  # the receiver answers 200: no retries
    assert len(rx.hits) == len(firsts) + len(copies)

    lo, hi = interval(N, LOSS)
    assert lo <= len(lost) <= hi, (len(lost), lo, hi)
    lo, hi = interval(len(firsts), DUP)
    assert lo <= len(copies) <= hi, (len(copies), lo, hi)

    lags = sorted((e["t_s"] - accepted[(e["message_id"], e["rcpt"])]) / SCALE for e in firsts)
    n = len(lags)
    d = max(max((i + 1) / n - lognormal_cdf(x), lognormal_cdf(x) - i / n) for i, x in enumerate(lags))
    assert d < 1.949 / math.sqrt(n), (d, 1.949 / math.sqrt(n))

    m = webhook_metrics([Event(e["t_s"], e["source"], e["kind"], e["corr"],
                               {k: val for k, val in e.items() if k not in ("t_s", "source", "kind", "corr")})
                         for e in evs], time_scale=SCALE)
    p_lo, p_hi = 0.5 - Z * 0.5 / math.sqrt(n), 0.5 + Z * 0.5 / math.sqrt(n)
    inv = lambda p: MEDIAN_S * math.exp(SIGMA * math.sqrt(2) * _erfinv(2 * p - 1))  # noqa: E731
    # the metric runs to the 2xx answer: allow the slowest answer's latency on top
    slowest_s = max(e["latency_ms"] for e in evs if e["kind"] == "mta.webhook.answered") / 1000 / SCALE
    assert inv(p_lo) <= m["webhook_lag_p50_s"] <= inv(p_hi) + slowest_s, (m, inv(p_lo), inv(p_hi), slowest_s)
    assert {k: m[k] for k in ("webhooks_sent", "webhooks_lost", "webhook_retries",
                              "webhook_duplicates_delivered")} == {
        "webhooks_sent": N, "webhooks_lost": len(lost), "webhook_retries": 0,
        "webhook_duplicates_delivered": len(copies)}
    print(f"\nwebhooks {N}: lost {len(lost)} (99.9% interval {interval(N, LOSS)}), duplicated {len(copies)} "
          f"({interval(len(firsts), DUP)}), KS D {d:.4f} < {1.949 / math.sqrt(n):.4f}, "
          f"p50 {m['webhook_lag_p50_s']:.3f} s in [{inv(p_lo):.3f}, {inv(p_hi):.3f}] + {slowest_s:.3f}, "
          f"p99 {m['webhook_lag_p99_s']:.3f} s")


def _erfinv(y: float) -> float:
    """Inverse error function by bisection (exact enough for an interval bound)."""
    lo, hi = -6.0, 6.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
