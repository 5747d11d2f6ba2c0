"""What the Locust master and maildrill's workers say to each other, and the pure decisions behind it.

Everything between the harness and a Locust worker travels over Locust's own master/worker channel (custom
messages, `runner.register_message` / `runner.send_message`), so a worker needs nothing from the harness's
disk and can run on another machine. The master runs on the harness machine, next to the run directory:

    worker -> master  ping {w}                the worker's monotonic time; the master answers
    master -> worker  pong {w, m}             ... with its run-clock time m (the clock handshake)
    worker -> master  hello {host, pid, ...}  after its first pings: it knows the run clock within ±half an RTT
    master -> worker  plan {plan}             the load plan (LoadPlan.to_json)
    master -> worker  assign {index, count}   when the roster is fixed: this worker's share of the arrivals
    worker -> master  ready {users, ...}      its users are spawned and waiting
    master -> worker  go {t0_s}               run-clock time of load second 0
    master -> worker  delivered [corr, ...]   accepted by a fake MTA (the patience model's "got it")
    worker -> master  events [[t_s, kind, corr, data], ...]   request events, stamped on the run clock
    worker -> master  done {skipped_resends, clock}           its share is sent and every event was flushed

No `import locust` here (the locustfile is the only module that does); this is unit-tested without Locust.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

PREFIX = "maildrill."
PING, PONG, HELLO, PLAN, ASSIGN, READY, GO, DELIVERED, EVENTS, DONE = (
    PREFIX + n for n in ("ping", "pong", "hello", "plan", "assign", "ready", "go", "delivered", "events", "done"))
TO_MASTER = (PING, HELLO, READY, EVENTS, DONE)
TO_WORKER = (PONG, PLAN, ASSIGN, GO, DELIVERED)

# master-side settings handed over by the harness (the master runs next to the run directory)
EXPECT_ENV = "MAILDRILL_LOAD_EXPECT_WORKERS"  # how many workers the roster waits for
WAIT_ENV = "MAILDRILL_LOAD_WORKER_WAIT_S"  # how long it waits for them before starting with those that came
# a worker's preferred index (local workers: their spawn index, so `load/worker-0` is the process the harness
# started first); remote workers leave it unset and get the free indices in the order they joined
INDEX_HINT_ENV = "MAILDRILL_LOAD_WORKER_INDEX"

HANDSHAKE_PINGS = 8  # pings before hello; the one with the shortest round trip sets the clock
RESYNC_S = 1.0  # a ping a second afterwards, so drift between the hosts' clocks is followed
WINDOW = 16  # the clock is set from the best of the last WINDOW pings


@dataclass(frozen=True)
class Sample:
    origin: float  # the worker's time.monotonic() at run-clock 0, as this ping measured it
    half_rtt_s: float  # the true origin is within ± this of `origin`
    at_local_s: float


class ClockSync:
    """NTP-style offset from ping/pong pairs: the master's run-clock reading m was taken somewhere between the
    worker's send and receive times, so the worker's run clock is `monotonic - origin` with
    origin = (sent + received) / 2 - m, off by at most half the round trip. The best (shortest round trip) of
    the last WINDOW samples wins; a sample older than the window is forgotten, so a slow drift is followed."""

    def __init__(self, window: int = WINDOW) -> None:
        self.samples: deque[Sample] = deque(maxlen=window)
        self.count = 0
        self.worst_half_rtt_s = 0.0  # of the samples that were chosen
        self.first_origin: float | None = None

    def add(self, sent_local_s: float, master_t_s: float, received_local_s: float) -> Sample:
        if received_local_s < sent_local_s:
            raise ValueError("a pong cannot arrive before its ping was sent")
        s = Sample((sent_local_s + received_local_s) / 2 - master_t_s, (received_local_s - sent_local_s) / 2,
                   received_local_s)
        self.samples.append(s)
        self.count += 1
        best = self.best()
        assert best is not None
        if self.first_origin is None:
            self.first_origin = best.origin
        self.worst_half_rtt_s = max(self.worst_half_rtt_s, best.half_rtt_s)
        return s

    def best(self) -> Sample | None:
        return min(self.samples, key=lambda s: s.half_rtt_s) if self.samples else None

    def stats(self) -> dict[str, float | int]:
        """What a worker reports about its clock: the current bound, the worst bound it ran with, the drift."""
        best = self.best()
        return {"clock_uncertainty_ms": round(best.half_rtt_s * 1000, 3) if best else -1.0,
                "clock_worst_uncertainty_ms": round(self.worst_half_rtt_s * 1000, 3),
                "clock_drift_ms": round((best.origin - (self.first_origin or best.origin)) * 1000, 3) if best else 0.0,
                "clock_pings": self.count,
                # the worker's monotonic reading at run-clock 0: on the master's host (or with a known offset
                # between the two clocks) its difference from the master's clock_origin_s is the real error
                "clock_origin_s": round(best.origin, 6) if best else 0.0}


def owner_of(corr: str, count: int) -> int | None:
    """The worker index that sends need `corr` (corr_of(k) = u%06d, and worker i sends every count-th k from i)."""
    if count <= 0 or not corr.startswith("u") or not corr[1:].isdigit():
        return None
    return int(corr[1:]) % count


def assign_indices(joined: list[tuple[str, int | None]]) -> dict[str, int]:
    """Roster indices 0..n-1 for the workers that joined (in join order), each as (id, preferred index):
    a free preferred index inside the roster is kept, the rest get the free ones in join order."""
    n = len(joined)
    out: dict[str, int] = {}
    for wid, hint in joined:
        if hint is not None and 0 <= hint < n and hint not in out.values():
            out[wid] = hint
    free = iter(i for i in range(n) if i not in out.values())
    for wid, _ in joined:
        if wid not in out:
            out[wid] = next(free)
    return out


def local_now() -> float:
    return time.monotonic()


def parse_host_port(text: str, what: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT or [IPv6]:PORT. Raises UsageError naming `what`."""
    from maildrill.harness.errors import UsageError

    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"{what} {text!r}: expected [ADDRESS]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise UsageError(f"{what} {text!r}: no host")
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{what} {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)
