"""The numbers the measures read, as numpy columns: one walk over the join's messages and requests, then every
measure — the run's and each class's — is array arithmetic on a boolean mask of them.

Walking `Message` records once per measure and once more per class took ~30 s of a 10 M event report (1 M
messages, two classes); these columns take ~3 s to build and each measure on them a fraction of a second.
The few measures that need a message's whole story (duplicate causes, retry intervals, a 5xx retried, the
offenders) read only the messages the columns single out: those accepted twice, attempted twice, bounced, or
flagged."""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from maildrill.harness.analysis.join import Join, Message, Requests
from maildrill.harness.analysis.stats import percentile

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int32]
Flags = npt.NDArray[np.bool_]
INF = math.inf


@dataclass(frozen=True, eq=False)
class Columns:
    """Per message (in the join's order, `messages`), per acceptance after a message's first, and per request. A
    message's class is an index into `classes` (-1: none of them); an MTA an index into `mtas` (-1: none). 32-bit
    ints, flags rather than counts, and the requests' own arrays (not copies): at 10 M events (1 M messages) these
    columns are ~60 MB on top of the join."""

    messages: Sequence[Message]
    classes: tuple[str, ...]
    cls: Ints
    # when the SUT took it on: its first acknowledged request; a message whose requests all failed but that was
    # delivered anyway (queued before a crash cut the reply) from its first request; inf (never) for one the SUT
    # refused and never sent — the user saw the error (http_error_ratio, undelivered), but it was never in the
    # SUT's queue, so it is not outstanding and does not keep a drain from ending
    owed: Floats
    resolved: Floats  # its first acceptance or first 5xx, whichever came first, and not before its first request
    latency: Floats  # first request -> first acceptance (`latency.latency`); inf: never delivered
    first_acc: Floats  # its first acceptance; inf: none
    first_mta: Ints  # the MTA of its first acceptance; -1: none
    delivered: Flags
    bounced: Flags  # it had a 5xx
    retried: Flags  # it had more than one delivery attempt
    accepted_again: Flags  # it was accepted more than once
    # per class (in `classes` order): acknowledged_but_lost, and how many attempts its messages had (one that
    # named several of them counted once)
    discarded_by_class: tuple[int, ...]
    attempts_by_class: tuple[int, ...]
    mtas: tuple[str, ...]
    # one row per acceptance after a message's first
    again_msg: Ints
    again_t: Floats
    again_mta: Ints
    # one row per request, in the join's order
    req_t: Floats
    req_latency: Floats
    req_ok: Flags
    req_cls: Ints

    def class_index(self, cls: str) -> int:
        return self.classes.index(cls)

    def of_class(self, cls: str) -> Flags:
        mine: Flags = self.cls == self.classes.index(cls)
        return mine

    def requests_of_class(self, cls: str) -> Flags:
        mine: Flags = self.req_cls == self.classes.index(cls)
        return mine

    def pick(self, mask: Flags | None, *also: Flags) -> list[Message]:
        """The messages where `mask` (None: every one) and any of `also` hold, in order."""
        chosen = np.logical_or.reduce(also) if also else np.ones(len(self.messages), dtype=np.bool_)
        if mask is not None:
            chosen &= mask
        return [self.messages[i] for i in np.flatnonzero(chosen).tolist()]


def build(j: Join, classes: Sequence[str]) -> Columns:
    messages = list(j.messages.values())
    class_ix = {c: i for i, c in enumerate(classes)}
    mta_ix: dict[str, int] = {}
    n_classes = len(classes)
    discarded = [0] * (n_classes + 1)  # the last: no class
    attempts = [0] * (n_classes + 1)
    cls, first_mta = array("i"), array("i")
    retried, again = bytearray(), bytearray()
    first_req, first_ok, first_acc, bounce_t = array("d"), array("d"), array("d"), array("d")
    again_msg, again_t, again_mta = array("i"), array("d"), array("i")
    for i, m in enumerate(messages):
        k = class_ix.get(m.cls, -1)  # type: ignore[arg-type]
        cls.append(k)
        first_req.append(m.first_req)
        first_ok.append(m.first_ok)
        discarded[k] += m.discarded
        bounce_t.append(m.first_5xx.t if m.first_5xx is not None else INF)
        n = m.attempt_count
        attempts[k] += n
        retried.append(n > 1)
        acc = m.acceptances
        again.append(len(acc) > 1)
        if not acc:
            first_acc.append(INF)
            first_mta.append(-1)
            continue
        first_acc.append(acc[0].t)
        for x, a in enumerate(acc):
            mta = mta_ix.get(a.mta)
            if mta is None:
                mta = mta_ix[a.mta] = len(mta_ix)
            if x == 0:
                first_mta.append(mta)
            else:
                again_msg.append(i)
                again_t.append(a.t)
                again_mta.append(mta)
    # an attempt that named several messages of one class was counted once per message above
    for corrs in j.attempts.shared_ids():
        named = [class_ix.get(j.messages[c].cls, -1) for c in corrs if c in j.messages]  # type: ignore[arg-type]
        for k in set(named):
            attempts[k] -= named.count(k) - 1
    f_req, f_ok, f_acc, b5 = (np.frombuffer(x, dtype=np.float64) for x in (first_req, first_ok, first_acc, bounce_t))
    delivered = f_acc < INF
    # element by element, as Python's min/max and `latency.latency` choose (where, not minimum/maximum: on equal
    # values the same operand is picked, so even a -0.0 comes out as it always did)
    owed = np.where(f_ok < INF, f_ok, np.where(delivered, f_req, INF))
    settled = np.where(b5 < f_acc, b5, f_acc)
    resolved = np.where(f_req > settled, f_req, settled)
    wait = f_acc - f_req
    latency = np.where(delivered, np.where(wait > 0.0, wait, 0.0), INF)
    bounced = b5 < INF
    del f_ok, b5, settled, wait, first_req, first_ok, bounce_t
    reqs = j.requests if isinstance(j.requests, Requests) else Requests(j.requests)
    t, req_cls, ok, lat = reqs.arrays()
    small = np.int32
    return Columns(
        messages, tuple(classes), np.frombuffer(cls, dtype=small), owed, resolved, latency, f_acc,
        np.frombuffer(first_mta, dtype=small), delivered, bounced, np.frombuffer(retried, dtype=np.bool_),
        np.frombuffer(again, dtype=np.bool_), tuple(discarded[:n_classes]), tuple(attempts[:n_classes]),
        tuple(mta_ix), np.frombuffer(again_msg, dtype=np.int32), np.frombuffer(again_t, dtype=np.float64),
        np.frombuffer(again_mta, dtype=small), np.frombuffer(t, dtype=np.float64),
        np.frombuffer(lat, dtype=np.float64), np.frombuffer(ok, dtype=np.bool_),
        np.fromiter((class_ix.get(c, -1) for c in req_cls), dtype=small, count=len(req_cls)))  # type: ignore[arg-type]


def percentiles(values: Floats, *ps: float) -> list[float | None]:
    """`stats.percentile` of `values` (in any order) at each of `ps`, as Python floats: sorted as an array, never
    turned into a list of a million floats."""
    ordered = np.sort(values)
    return [None if (v := percentile(ordered, p)) is None else float(v) for p in ps]


def sorted_list(values: Floats) -> list[float]:
    """`values` sorted, as Python floats (what the reports and `stats.percentile` read)."""
    out: list[float] = np.sort(values).tolist()
    return out


def ttl_limits(c: Columns, ttl: Mapping[str, float]) -> Floats:
    """Per message, its class's ttl_s (nan: none), as `latency.expired` looks it up (`ttl[cls or ""]`)."""
    table = np.array([ttl.get(k, np.nan) for k in c.classes] + [ttl.get("", np.nan)], dtype=np.float64)
    limits: Floats = table[c.cls]  # -1 (no class) is the table's last entry: ttl.get("")
    return limits
