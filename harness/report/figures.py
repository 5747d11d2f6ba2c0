"""The report's figures, drawn with matplotlib's object API (Figure + Agg canvas; never pyplot, which keeps
global state). Every figure plots the analysis's 1 s series, never raw events, so a million-event run
draws as fast as a small one. Fault windows are shaded and labelled on every time axis."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from maildrill.harness.analysis import Analysis, Series
from maildrill.harness.verdict import Stability
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WINDOW_COLORS = ("#f4a261", "#e76f51", "#2a9d8f", "#8ab17d", "#b5838d", "#6d597a")
BLUE, ORANGE, GREEN, RED, GREY = "#1d4e89", "#f4a261", "#2a9d8f", "#c0392b", "#7f8c8d"
FLAKY = "#a85d00"


def _figure(height: float = 4.0) -> Figure:
    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


MAX_POINTS = 720  # a figure shows at most this many time buckets; longer runs are averaged into wider ones


def _coarse(series: Series | None, *, level: bool = False) -> Series | None:
    """The series in at most MAX_POINTS buckets: rates averaged, levels (outstanding, depth) at their maximum."""
    if series is None or len(series.t_s) <= MAX_POINTS:
        return series
    k = -(-len(series.t_s) // MAX_POINTS)
    vals = series.values
    out = []
    for i in range(0, len(vals), k):
        chunk = vals[i:i + k]
        out.append(max(chunk) if level else sum(chunk) / len(chunk))
    return Series(series.t_s[::k], tuple(out))


def _ratio_series(analysis: Analysis, points: int = 150) -> Series | None:
    """Deferred ratio over buckets wide enough to mean something (sum of 4xx / sum of attempts per bucket):
    a per-second ratio of one or two attempts only flips between 0 and 1."""
    d4, att = analysis.series.get("replies_4xx"), analysis.series.get("attempts")
    if d4 is None or att is None or not att.t_s:
        return None
    k = max(1, -(-len(att.t_s) // points))
    ts, vals = [], []
    for i in range(0, len(att.t_s), k):
        n = sum(att.values[i:i + k])
        ts.append(att.t_s[i])
        vals.append(sum(d4.values[i:i + k]) / n if n else 0.0)
    return Series(tuple(ts), tuple(vals))


def _shade_windows(ax: Axes, analysis: Analysis) -> None:
    seen: dict[str, str] = {}
    for w in analysis.windows:
        label = f"{w.target} {w.what}"
        color = seen.setdefault(label, WINDOW_COLORS[len(seen) % len(WINDOW_COLORS)])
        ax.axvspan(w.start_s, max(w.end_s, w.start_s + 0.2), color=color, alpha=0.18, lw=0,
                   label=f"fault: {label}" if label not in ax.get_legend_handles_labels()[1] else None)
    if analysis.load_window:
        ax.axvline(analysis.load_window[1], color=GREY, ls=":", lw=1, label="end of load")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def requests_and_deliveries(analysis: Analysis) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    req, dlv = _coarse(analysis.series.get("requests")), _coarse(analysis.series.get("delivered"))
    out = _coarse(analysis.series.get("outstanding"), level=True)
    if req is None or not any(req.values):
        _empty(ax, "no requests were recorded")
        return fig
    ax.step(req.t_s, req.values, where="post", color=BLUE, lw=1.2, label="requests/s")
    if dlv is not None:
        ax.step(dlv.t_s, dlv.values, where="post", color=GREEN, lw=1.2, label="first deliveries/s")
    ax.set_xlabel("seconds since the load began (scenario time)")
    ax.set_ylabel("per second")
    if out is not None:
        ax2 = ax.twinx()
        ax2.fill_between(out.t_s, out.values, step="post", color=RED, alpha=0.15)
        ax2.step(out.t_s, out.values, where="post", color=RED, lw=1.4, label="outstanding (not yet delivered)")
        depth = _coarse(analysis.series.get("queue_depth"), level=True)
        if depth is not None:
            ax2.step(depth.t_s, depth.values, where="post", color="#6d597a", lw=1.2, ls="--",
                     label="SUT queue depth (its own probe)")
        ax2.set_ylabel("outstanding messages", color=RED)
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
    else:
        h2, l2 = [], []
    _shade_windows(ax, analysis)
    h1, l1 = ax.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    ax.set_ylim(bottom=0)
    ax.set_title("Requests, deliveries and the queue that builds up", loc="left", fontsize=11)
    return fig


def attempts_and_replies(analysis: Analysis) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    att = _coarse(analysis.series.get("attempts"))
    if att is None or not any(att.values):
        _empty(ax, "no delivery attempts reached an MTA")
        return fig
    bottom = [0.0] * len(att.t_s)
    for key, color, label in (("replies_2xx", GREEN, "accepted"), ("replies_4xx", ORANGE, "deferred (4xx)"),
                              ("replies_5xx", RED, "rejected (5xx)")):
        s = _coarse(analysis.series.get(key))
        if s is None or not any(s.values):
            continue
        top = [b + v for b, v in zip(bottom, s.values, strict=True)]  # stacked, one polygon per outcome
        ax.fill_between(s.t_s, bottom, top, step="post", color=color, label=label, lw=0, alpha=0.9)
        bottom = top
    ax.step(att.t_s, att.values, where="post", color=BLUE, lw=1, label="attempts/s")
    _shade_windows(ax, analysis)
    ax.set_xlabel("seconds since the load began (scenario time)")
    ax.set_ylabel("delivery attempts per second")
    handles, labels = ax.get_legend_handles_labels()
    ratio = _ratio_series(analysis)
    if ratio is not None and any(ratio.values):
        ax3 = ax.twinx()
        ax3.step(ratio.t_s, ratio.values, where="post", color="#7f4f24", lw=1, ls=":", label="deferred ratio")
        ax3.set_ylim(0, 1.05)
        ax3.set_ylabel("deferred ratio (4xx / attempts)", color="#7f4f24")
        h3, l3 = ax3.get_legend_handles_labels()
        handles, labels = handles + h3, labels + l3
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    peak = analysis.metrics.get("attempts_per_s_peak")
    ax.set_title(f"Delivery attempts by outcome (peak {peak:g}/s)" if peak is not None else "Delivery attempts",
                 loc="left", fontsize=11)
    return fig


def retry_intervals(analysis: Analysis) -> Figure:
    fig = _figure(3.2)
    ax = fig.add_subplot()
    iv = analysis.retry_intervals_s
    if not iv:
        _empty(ax, "no retries: every message was delivered (or rejected) on its first attempt")
        return fig
    top = max(iv)
    bins = min(80, max(10, len(iv) // 5))
    ax.hist(iv, bins=bins, range=(0, top * 1.02 if top > 0 else 1), color=BLUE, alpha=0.85)
    ax.set_xlabel("seconds between consecutive attempts of the same message (scenario time)")
    ax.set_ylabel("retries")
    sync = analysis.metrics.get("retry_sync_index")
    sync_text = f"retry_sync_index {sync:.2f}" if isinstance(sync, float) else "retry_sync_index n/a"
    ax.set_title(f"Retry intervals ({len(iv)} retries; {sync_text}: 1 = lock-step, 0 = spread out)",
                 loc="left", fontsize=11)
    return fig


def latency_cdf(analysis: Analysis) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    colors = (BLUE, GREEN, ORANGE, RED, "#6d597a", GREY)
    top = max((lat[-1] for lat in analysis.latencies_s.values() if lat), default=0.0)
    ttls = [t for c, t in analysis.ttl_s.items() if analysis.latencies_s.get(c)]
    right = max(top, min(ttls, default=top)) * 1.15 or 1.0  # the data and the nearest TTL; farther TTLs: an arrow
    for i, (cls, lat) in enumerate(sorted(analysis.latencies_s.items())):
        n_req = analysis.by_class.get(cls, {}).get("messages_requested") or len(lat)
        if not lat:
            continue
        color = colors[i % len(colors)]
        step = max(1, len(lat) // 2000)  # at most ~2,000 points per curve; the last one always drawn
        idx = list(range(0, len(lat), step)) + ([len(lat) - 1] if (len(lat) - 1) % step else [])
        xs = [lat[k] for k in idx]
        ys = [(k + 1) / n_req for k in idx]  # of all requested: undelivered never reach 1
        ax.step(xs, ys, where="post", color=color, lw=1.5, label=f"{cls} ({len(lat)}/{n_req} delivered)")
        ttl = analysis.ttl_s.get(cls)
        if ttl is not None and ttl <= right:
            ax.axvline(ttl, color=color, ls="--", lw=1)
            ax.text(ttl, 0.02, f" {cls} TTL {ttl:g} s", color=color, fontsize=8, rotation=90, va="bottom")
        elif ttl is not None:
            ax.annotate(f"{cls} TTL {ttl:g} s →", xy=(0.995, 0.95 - 0.07 * i), xycoords="axes fraction",
                        ha="right", va="top", color=color, fontsize=8)  # clear of the curves, which end left of it
        drawn = True
    if not drawn:
        _empty(ax, "no message was delivered")
        return fig
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, right)
    ax.set_xlabel("delivery latency: request completed -> first acceptance (s, scenario time)")
    ax.set_ylabel("share of requested messages")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title("Delivery latency per class (dashed: the class's TTL)", loc="left", fontsize=11)
    return fig


def duplicates_per_mta(analysis: Analysis) -> Figure:
    fig = _figure(2.8)
    ax = fig.add_subplot()
    names = sorted(analysis.by_mta)
    dups = [analysis.by_mta[n].get("duplicates") or 0 for n in names]
    delivered = [analysis.by_mta[n].get("delivered") or 0 for n in names]
    if not names:
        _empty(ax, "no MTA recorded anything")
        return fig
    y = list(range(len(names)))
    ax.barh([v + 0.2 for v in y], delivered, height=0.4, color=GREEN, label="messages delivered")
    ax.barh([v - 0.2 for v in y], dups, height=0.4, color=RED, label="duplicate deliveries")
    ax.set_yticks(y, names)
    for v, d in zip(y, dups, strict=True):
        ax.text(d, v - 0.2, f" {d:g}", va="center", fontsize=9, color=RED)
    ax.legend(loc="lower right", fontsize=8)
    total = analysis.metrics.get("duplicates") or 0
    ax.set_title(f"Deliveries and duplicates per MTA ({total:g} duplicates in all)", loc="left", fontsize=11)
    return fig


FIGURES: dict[str, tuple[str, Callable[[Analysis], Figure]]] = {
    "requests_deliveries": ("Requests vs deliveries, and outstanding messages", requests_and_deliveries),
    "attempts_replies": ("Delivery attempts per second by outcome", attempts_and_replies),
    "retry_intervals": ("Retry-interval histogram", retry_intervals),
    "latency_cdf": ("Delivery latency CDF per class, with TTLs", latency_cdf),
    "duplicates": ("Deliveries and duplicates per MTA", duplicates_per_mta),
}


def render_all(analysis: Analysis, out_dir: Path) -> dict[str, bytes]:
    """Write figures/<name>.png and return the PNG bytes by name (the HTML embeds them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    for name, (_, draw) in FIGURES.items():
        fig = draw(analysis)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = buf.getvalue()
        (out_dir / f"{name}.png").write_bytes(data)
        pngs[name] = data
    return pngs


def stability(st: Stability) -> Figure:
    """One panel per threshold: each run's value (green held, red failed, a cross at the top for a null), the
    limits dashed, and the `over` statistic where the threshold has one."""
    checks = st.checks or ()
    cols = min(4, max(1, len(checks)))
    rows = max(1, -(-len(checks) // cols))
    fig = _figure(2.4 * rows)
    if not checks:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "the scenario has no thresholds", ha="center", va="center", color=GREY)
        ax.set_axis_off()
        return fig
    xs = list(range(1, st.runs + 1))
    for i, c in enumerate(checks):
        ax = fig.add_subplot(rows, cols, i + 1)
        measured = [v for v in c.values if v is not None]
        marks = [x for x in (c.max, c.min, c.statistic) if x is not None]
        lo, hi = min(measured + marks, default=0.0), max(measured + marks, default=1.0)
        pad = (hi - lo) * 0.15 or max(abs(hi) * 0.15, 0.5)
        top = hi + pad
        for x, v, ok in zip(xs, c.values, c.passed_runs, strict=True):
            if v is None:
                ax.plot([x], [top], marker="x", color=RED, markersize=8, linestyle="none")
            else:
                ax.plot([x], [v], marker="o", color=GREEN if ok else RED, markersize=7, linestyle="none")
        for limit, name in ((c.max, "max"), (c.min, "min")):
            if limit is not None:
                ax.axhline(limit, color=GREY, linestyle="--", linewidth=1.2, label=f"{name} {limit:g}")
        if c.over is not None and c.statistic is not None:
            ax.axhline(c.statistic, color=BLUE, linewidth=1.4, label=f"{c.over} {c.statistic:.3g}")
        bottom = lo - pad if lo < 0 else max(lo - pad, -(top - lo) * 0.08)  # counts and ratios: hardly below 0
        ax.set_ylim(bottom, top + pad * 0.6)
        ax.set_xticks(xs)
        ax.set_xlim(0.5, st.runs + 0.5)
        ax.set_xlabel("run", fontsize=8)
        color = GREEN if c.outcome.value == "pass" else RED if c.outcome.value == "fail" else FLAKY
        ax.set_title(f"{c.threshold}\n{c.label}", fontsize=9, color=color)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="best", framealpha=0.5)
    return fig


def stability_png(st: Stability) -> bytes:
    buf = io.BytesIO()
    stability(st).savefig(buf, format="png")
    return buf.getvalue()
