"""The numbers the measures read, as numpy columns: one walk over the join's messages and requests, then every
measure — the run's and each class's — is array arithmetic on a boolean mask of them.

Walking `Message` records once per measure and once more per class took ~30 s of a 10 M event report (1 M
messages, two classes); these columns take ~2 s to build and the measures on them well under a second each.
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

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int32]
Flags = npt.NDArray[np.bool_]
INF = math.inf


@dataclass(frozen=True, eq=False)
class Columns:
    """Per message (in the join's order, `messages`), per acceptance and per request. A message's class is an
    index into `classes` (-1: none of them); an acceptance's MTA an index into `mtas`. 32-bit ints and the
    requests' own arrays (not copies): at 10 M events these columns are ~90 MB, on top of the join."""

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
    delivered: Flags
    bounced: Flags  # it had a 5xx
    discarded: Ints
    attempts: Ints  # how many delivery attempts
    accepted: Ints  # how many acceptances
    # one row per (message, attempt): an attempt that named several messages has a row for each
    attempt_msg: Ints
    attempt_id: Ints
    # one row per acceptance, in each message's order
    mtas: tuple[str, ...]
    acc_msg: Ints
    acc_t: Floats
    acc_mta: Ints
    acc_first: Flags
    # one row per request, in the join's order
    req_t: Floats
    req_latency: Floats
    req_ok: Flags
    req_cls: Ints

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
    cls, discarded, n_att, n_acc = array("i"), array("i"), array("i"), array("i")
    first_req, first_ok, first_acc, bounce_t = array("d"), array("d"), array("d"), array("d")
    att_msg, att_id = array("i"), array("i")
    acc_msg, acc_t, acc_mta, acc_first = array("i"), array("d"), array("i"), bytearray()
    for i, m in enumerate(messages):
        cls.append(class_ix.get(m.cls, -1))  # type: ignore[arg-type]
        first_req.append(m.first_req)
        first_ok.append(m.first_ok)
        discarded.append(m.discarded)
        bounce_t.append(m.first_5xx.t if m.first_5xx is not None else INF)
        ids = m.attempt_ids
        n_att.append(len(ids))
        att_id.extend(ids)
        att_msg.extend([i] * len(ids))
        acc = m.acceptances
        n_acc.append(len(acc))
        first_acc.append(acc[0].t if acc else INF)
        first = 1
        for a in acc:
            acc_msg.append(i)
            acc_t.append(a.t)
            k = mta_ix.get(a.mta)
            if k is None:
                k = mta_ix[a.mta] = len(mta_ix)
            acc_mta.append(k)
            acc_first.append(first)
            first = 0
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
    ints = np.int32
    return Columns(
        messages, tuple(classes), np.frombuffer(cls, dtype=ints), owed, resolved, latency, f_acc,
        delivered, bounced, np.frombuffer(discarded, dtype=ints), np.frombuffer(n_att, dtype=ints),
        np.frombuffer(n_acc, dtype=ints), np.frombuffer(att_msg, dtype=ints),
        np.frombuffer(att_id, dtype=ints), tuple(mta_ix), np.frombuffer(acc_msg, dtype=ints),
        np.frombuffer(acc_t, dtype=np.float64), np.frombuffer(acc_mta, dtype=ints),
        np.frombuffer(acc_first, dtype=np.bool_), np.frombuffer(t, dtype=np.float64),
        np.frombuffer(lat, dtype=np.float64), np.frombuffer(ok, dtype=np.bool_),
        np.fromiter((class_ix.get(c, -1) for c in req_cls), dtype=ints, count=len(req_cls)))  # type: ignore[arg-type]


def sorted_list(values: Floats) -> list[float]:
    """`values` sorted, as Python floats (what the reports and `stats.percentile` read)."""
    out: list[float] = np.sort(values).tolist()
    return out


def ttl_limits(c: Columns, ttl: Mapping[str, float]) -> Floats:
    """Per message, its class's ttl_s (nan: none), as `latency.expired` looks it up (`ttl[cls or ""]`)."""
    table = np.array([ttl.get(k, np.nan) for k in c.classes] + [ttl.get("", np.nan)], dtype=np.float64)
    limits: Floats = table[c.cls]  # -1 (no class) is the table's last entry: ttl.get("")
    return limits
