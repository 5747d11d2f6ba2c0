"""The join: one pass over the events that tells every message's story — its requests, its delivery attempts at
each MTA and their refusals, its acceptances — as named, frozen records the measures read.

Definitions (also in the README, "Metrics"):
- A *delivery attempt* is one SMTP transaction (an MTA's connection and transaction number) that reached
  MAIL FROM, or one HTTP request to a fake email-API vendor (which records as `mta/<name>` with the same
  kinds: its reply carries the SMTP-equivalent code class; a request it holds or never answers records
  `mta.request.received`); it belongs to every correlation id a reply in it carried. Its *outcome* is `accepted` (a
  message was stored, or a blackholing 250 was sent), else `5xx` (a permanent reply), else `4xx`
  (deferred), else `other` (the connection ended without a verdict).
- A message is *delivered* once any MTA records `mta.message.accepted` for its id (`ack: lost` included:
  the receiver has it). It is *resolved* when delivered or permanently rejected (its first 5xx).

Times are scenario seconds since the load phase began: (event seconds - `Origin.t0`) / `Origin.scale`.
Pure: the same events in any order give the same join.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, overload

from maildrill.harness.analysis.webhooks import WebhookTally
from maildrill.harness.events import Event, EventKind

AttemptKey = tuple[str, Any, Any]  # (mta, conn, txn)
T = TypeVar("T")


@functools.lru_cache(maxsize=4096)  # a run has a few sources: one name string each, not one per event
def mta_of(source: str) -> str:
    """The MTA's name from an event source (`mta/<name>`)."""
    return source[4:] if source.startswith("mta/") else source


# --- the records -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Origin:
    """The time base: event seconds `t0` is scenario second 0; `scale` is the run's time_scale."""

    scale: float = 1.0
    t0: float = 0.0
    drain_started: float | None = None  # event seconds of run.phase.changed drain
    notes: tuple[str, ...] = ()

    def at(self, t_s: float) -> float:
        return (t_s - self.t0) * (1.0 / self.scale)


class Request(NamedTuple):
    """One completed load request (load.request.completed)."""

    t: float
    cls: str | None
    ok: bool
    latency_ms: float


class _Columns(Sequence[T]):
    """A read-only sequence kept column by column: each item is built by `_row` as it is read."""

    __slots__ = ()

    def _row(self, i: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...

    def __getitem__(self, i: int | slice) -> T | tuple[T, ...]:
        if isinstance(i, slice):
            return tuple(map(self._row, range(*i.indices(len(self)))))
        return self._row(range(len(self))[i])  # a negative index counts from the end; out of range: IndexError

    def __iter__(self) -> Iterator[T]:
        return map(self._row, range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(
            a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class Requests(_Columns[Request]):
    """The run's requests, column by column (a million `Request` tuples take ~140 MB, these columns ~25 MB): a
    read-only sequence of `Request`, each built as it is read."""

    __slots__ = ("_cls", "_lat", "_ok", "_t")

    def __init__(self, requests: Iterable[Request] = ()) -> None:
        self._t = array("d")
        self._lat = array("d")
        self._ok = bytearray()
        self._cls: list[str | None] = []
        for r in requests:
            self.add(*r)

    def add(self, t: float, cls: str | None, ok: bool, latency_ms: float) -> None:
        self._t.append(t)
        self._cls.append(cls)
        self._ok.append(1 if ok else 0)
        self._lat.append(latency_ms)

    def extend_columns(self, t: bytes, cls: list[str | None], ok: bytes, latency_ms: bytes) -> None:
        """Append requests given as columns (`columns()` of another `Requests`): how a second process's part of
        the pass joins this one (`analysis.split`)."""
        self._t.frombytes(t)
        self._lat.frombytes(latency_ms)
        self._ok.extend(ok)
        self._cls.extend(cls)

    def count_class(self, cls: str | None) -> int:
        """How many requests are of class `cls`."""
        return self._cls.count(cls)

    def arrays(self) -> tuple[array[float], list[str | None], bytearray, array[float]]:
        """(times, classes, ok flags 0/1, latencies): the columns themselves, not copies (read only)."""
        return self._t, self._cls, self._ok, self._lat

    def columns(self) -> tuple[bytes, list[str | None], bytes, bytes]:
        """(times, classes, ok flags, latencies): plain values that `marshal` can carry to another process."""
        return self._t.tobytes(), self._cls, bytes(self._ok), self._lat.tobytes()

    def __len__(self) -> int:
        return len(self._t)

    def _row(self, i: int) -> Request:
        return Request(self._t[i], self._cls[i], bool(self._ok[i]), self._lat[i])

    def __iter__(self) -> Iterator[Request]:  # all the columns at once, faster than row by row
        return map(Request, self._t, self._cls, map(bool, self._ok), self._lat)


class Acceptance(NamedTuple):
    """One mta.message.accepted: when, by which MTA, and whether its 250 reached the client ("sent"/"lost")."""

    t: float
    mta: str
    ack: str


class Attempt(NamedTuple):
    key: AttemptKey
    mta: str  # key[0]
    start: float
    end: float
    corrs: tuple[str, ...]  # in the order the attempt first named them
    code: int  # the deciding reply: 250 when accepted, else the last 4xx/5xx (0: none)
    accepted: bool
    codes: tuple[int, ...]  # every reply code of the transaction, in the order the MTA sent them
    ack: str | None  # the ack of the message it stored ("sent"/"lost"), None when it stored nothing

    @property
    def outcome(self) -> str:
        if self.accepted:
            return "accepted"
        if self.code >= 500:
            return "5xx"
        if self.code >= 400:
            return "4xx"
        return "other"


class Bounce(NamedTuple):
    """A message's first permanent (5xx) reply: when, from which MTA, in which attempt."""

    t: float
    mta: str
    attempt: AttemptKey


class Attempts(_Columns[Attempt]):
    """The run's delivery attempts by (start, mta), column by column: a read-only sequence of `Attempt`, each built
    as it is read (a million `Attempt` records with their keys, times and id tuples took ~300 MB, these columns
    ~45 MB: the MTA, the reply-code sequence and the ack as numbers into small tables, conn and txn as 32-bit ints
    while they fit). The measures that read every attempt read the columns (`starts`, `ends`, `outcomes`,
    `mta_numbers`)."""

    __slots__ = ("_accepted", "_ack", "_code", "_codes", "_conn", "_corrs", "_end", "_mta", "_outcomes", "_start",
                 "_tables", "_txn")

    def __init__(self) -> None:
        # each value of a table column once (`_tables`: values by number, numbers by value), the column its numbers
        self._tables: dict[str, tuple[list[Any], dict[Any, int]]] = {k: ([], {}) for k in ("mta", "codes", "ack")}
        self._mta = array("I")
        self._codes = array("I")
        self._ack = array("I")
        self._conn: array[int] | list[Any] = array("i")  # a list once a value is not an int that fits
        self._txn: array[int] | list[Any] = array("i")
        self._start = array("d")
        self._end = array("d")
        self._corrs: list[str | tuple[str, ...]] = []  # an attempt's one id as itself, else the tuple
        self._code = array("i")
        self._accepted = bytearray()
        self._outcomes: list[str] | None = None  # made by the first outcomes() after the last add

    @classmethod
    def of_columns(cls, mta_names: list[str], mta: array[int], conn: array[int], txn: array[int], start: array[float],
                   end: array[float], corrs: list[str | tuple[str, ...]], code: array[int], accepted: bytearray,
                   codes: tuple[list[tuple[int, ...]], array[int]], ack: tuple[list[str | None], array[int]]
                   ) -> Attempts:
        """Attempts from whole columns, already in order (`codes`, `ack`: the table's values and each one's number;
        `corrs` as `add` keeps them)."""
        a = cls()
        a._tables = {"mta": (mta_names, {v: i for i, v in enumerate(mta_names)}),
                     "codes": (codes[0], {v: i for i, v in enumerate(codes[0])}),
                     "ack": (ack[0], {v: i for i, v in enumerate(ack[0])})}
        a._mta, a._conn, a._txn, a._start, a._end = mta, conn, txn, start, end
        a._corrs, a._code, a._accepted, a._codes, a._ack = corrs, code, accepted, codes[1], ack[1]
        return a

    def _number(self, table: str, value: Any) -> int:
        values, numbers = self._tables[table]
        n = numbers.get(value)
        if n is None:
            n = numbers[value] = len(values)
            values.append(value)
        return n

    def add(self, key: AttemptKey, start: float, end: float, corrs: tuple[str, ...], code: int, accepted: bool,
            codes: tuple[int, ...], ack: str | None) -> int:
        """Append one attempt; its index."""
        self._outcomes = None
        self._mta.append(self._number("mta", key[0]))
        self._conn = _push(self._conn, key[1])
        self._txn = _push(self._txn, key[2])
        self._start.append(start)
        self._end.append(end)
        self._corrs.append(corrs[0] if len(corrs) == 1 else corrs)
        self._code.append(code)
        self._accepted.append(1 if accepted else 0)
        self._codes.append(self._number("codes", codes))
        self._ack.append(self._number("ack", ack))
        return len(self._mta) - 1

    @property
    def starts(self) -> array[float]:
        return self._start

    @property
    def ends(self) -> array[float]:
        return self._end

    def mta_numbers(self) -> tuple[list[str], array[int]]:
        """(the MTA names by number, each attempt's MTA number)."""
        return self._tables["mta"][0], self._mta

    def mtas_named(self) -> set[str]:
        """The MTAs some attempt was with."""
        names = self._tables["mta"][0]
        return {names[k] for k in set(self._mta)}

    def shared_ids(self) -> Iterator[tuple[str, ...]]:
        """The ids of each attempt that named more than one."""
        return (c for c in self._corrs if type(c) is tuple and len(c) > 1)

    def outcomes(self) -> list[str]:
        """Each attempt's `Attempt.outcome`, in order: made once (the series, the run's figures and each MTA's
        read it), so the list is shared and not to be changed."""
        if self._outcomes is None:
            self._outcomes = ["accepted" if ok else "5xx" if code >= 500 else "4xx" if code >= 400 else "other"
                              for ok, code in zip(self._accepted, self._code, strict=True)]
        return self._outcomes

    def __len__(self) -> int:
        return len(self._mta)

    def _row(self, i: int) -> Attempt:
        corrs = self._corrs[i]
        t = self._tables
        mta = t["mta"][0][self._mta[i]]
        return Attempt((mta, self._conn[i], self._txn[i]), mta, self._start[i], self._end[i],
                       (corrs,) if isinstance(corrs, str) else corrs, self._code[i], bool(self._accepted[i]),
                       t["codes"][0][self._codes[i]], t["ack"][0][self._ack[i]])


def _push(column: array[int] | list[Any], value: Any) -> array[int] | list[Any]:
    """Append `value` to an int column, which becomes a list (of the same values) for one that is not an int or does
    not fit (the 32-bit column keeps what it held, as ints)."""
    if type(column) is array:
        if type(value) is int:
            try:
                column.append(value)
                return column
            except OverflowError:
                pass
        column = list(column)
    column.append(value)
    return column


class Message:
    """Everything that happened to one correlation id. Its `attempts` are read from the join's `Attempts` when
    asked for (a new tuple each time: measures that read every message's attempts use `attempt_ids`,
    `attempt_count` or `attempt_starts`)."""

    __slots__ = ("_ai", "_all", "acceptances", "cls", "corr", "discarded", "first_5xx", "first_ok", "first_req",
                 "requests", "resends")

    def __init__(self, corr: str, cls: str | None, first_req: float, first_ok: float, requests: int,
                 resends: tuple[float, ...], acceptances: tuple[Acceptance, ...], attempt_ids: int | tuple[int, ...],
                 first_5xx: Bounce | None, discarded: int, attempts: Attempts) -> None:
        self.corr = corr
        self.cls = cls
        self.first_req = first_req  # inf: never requested
        self.first_ok = first_ok  # the first request the SUT acknowledged (2xx / 250); inf: none
        self.requests = requests
        self.resends = resends  # sorted
        self.acceptances = acceptances  # sorted
        self._ai = attempt_ids  # indices into `_all`, by (start, mta): one as itself
        self.first_5xx = first_5xx
        self.discarded = discarded
        self._all = attempts

    @property
    def attempt_ids(self) -> tuple[int, ...]:
        """Its attempts' indices in the join's `attempts`, by (start, mta)."""
        ai = self._ai
        return (ai,) if type(ai) is int else ai  # type: ignore[return-value]

    @property
    def attempt_count(self) -> int:
        return 1 if type(self._ai) is int else len(self._ai)  # type: ignore[arg-type]

    @property
    def attempt_starts(self) -> tuple[float, ...]:
        ai, starts = self._ai, self._all.starts
        if isinstance(ai, int):
            return (starts[ai],)
        if len(ai) < 2:
            return tuple(starts[i] for i in ai)
        got: tuple[float, ...] = operator.itemgetter(*ai)(starts)  # several at once, in C
        return got

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """By (start, mta)."""
        every = self._all
        return tuple(every[i] for i in self.attempt_ids)

    @property
    def delivered(self) -> bool:
        return bool(self.acceptances)

    def _fields(self) -> tuple[Any, ...]:
        return (self.corr, self.cls, self.first_req, self.first_ok, self.requests, self.resends, self.acceptances,
                self.attempts, self.first_5xx, self.discarded)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = ("corr", "cls", "first_req", "first_ok", "requests", "resends", "acceptances", "attempts",
                 "first_5xx", "discarded")
        return "Message(" + ", ".join(f"{k}={v!r}" for k, v in zip(names, self._fields(), strict=True)) + ")"


class FaultAction(NamedTuple):
    """A timeline action that fired (run.action.fired)."""

    t: float
    action: int
    target: str
    what: str


@dataclass(frozen=True)
class Join:
    messages: Mapping[str, Message]  # requested messages, by correlation id (sorted: results are order-free)
    attempts: Attempts  # every attempt, by (start, mta)
    requests: Sequence[Request]  # a `Requests` (columns) when the join built it
    depth: tuple[tuple[float, float], ...]  # (t, queue depth) samples
    fired: tuple[FaultAction, ...]
    undone: Mapping[int, float]  # action index -> when it was undone
    discarded_by_mta: Mapping[str, int]
    mtas_seen: frozenset[str]
    throttled: Mapping[str, tuple[float, ...]]  # per MTA, when it answered 421 (in a transaction or not)
    t_last: float
    webhook_metrics: Mapping[str, float | int | None]  # the fake vendors' delivery webhooks (analysis.webhooks)
    # per MTA / vendor name: the accepted messages that were a failover during webhook silence (none: no webhooks)
    silent_failovers_by_mta: Mapping[str, int] | None = None


# --- building them ---------------------------------------------------------------------------------
class _AttemptDraft:
    # 8 slots, 96 bytes with its GC header (10 slots took 112): the deciding `code` is read from `codes` at the end
    # and the ack_lost landing is one slot, ~25 MB less at 1.5 M attempts
    __slots__ = ("accepted", "ack", "codes", "corrs", "end", "kept", "key", "start")

    def __init__(self, key: int | AttemptKey, t: float) -> None:
        self.key = key  # the `_Pass.attempts` key (`_Pass.key`): a packed int, or the (mta, conn, txn) tuple
        self.start = self.end = t
        # the one id as itself, a tuple only for several (a 1-tuple per attempt was ~80 MB at 1.5 M attempts); the
        # tuples and the reply codes shared (`_Pass.shared`): they repeat from attempt to attempt, and lists or sets
        # per attempt cost several times the memory
        self.corrs: str | tuple[str, ...] = ()
        self.accepted = False
        self.codes: tuple[int, ...] = ()
        self.ack: str | None = None
        # where an ack_lost for it lands, the index of its acceptance in the message's acceptances (the last of that
        # id in this transaction): the id itself for index 0 (most attempts), (id, index) for another index, a dict
        # id -> index when it stored several ids (`_kept_at`)
        self.kept: str | tuple[str, int] | dict[str, int] | None = None

    def add_corr(self, corr: str) -> None:
        corrs = self.corrs
        if type(corrs) is str:
            if corrs != corr:
                self.corrs = (corrs, corr)
        elif not corrs:
            self.corrs = corr
        elif corr not in corrs:
            self.corrs = (*corrs, corr)

    def corr_ids(self) -> tuple[str, ...]:
        """Its ids, in the order it first named them."""
        corrs = self.corrs
        return (corrs,) if type(corrs) is str else corrs  # type: ignore[return-value]

    def freeze(self, into: Attempts, key: AttemptKey) -> int:
        return into.add(key, self.start, self.end, self.corr_ids(), deciding(self.codes), self.accepted, self.codes,
                        self.ack)


def deciding(codes: tuple[int, ...]) -> int:
    """An attempt's deciding code (bar acceptance): its last reply of 400 or more, in the order the replies were
    read (the order of `codes`), else 0."""
    for code in reversed(codes):
        if code >= 400:
            return code
    return 0


def kept_map(kept: str | tuple[str, int] | dict[str, int] | None) -> dict[str, int]:
    """`_AttemptDraft.kept` as a dict id -> acceptance index."""
    if kept is None:
        return {}
    if type(kept) is str:
        return {kept: 0}
    if type(kept) is tuple:
        return {kept[0]: kept[1]}
    return dict(kept)  # type: ignore[arg-type]


def kept_of(by_corr: dict[str, int]) -> str | tuple[str, int] | dict[str, int] | None:
    """`_AttemptDraft.kept` from a dict id -> acceptance index."""
    if not by_corr:
        return None
    if len(by_corr) > 1:
        return by_corr
    (corr, i), = by_corr.items()
    return corr if i == 0 else (corr, i)


def _kept_at(kept: str | tuple[str, int] | dict[str, int] | None, corr: str) -> int | None:
    if kept is None:
        return None
    if type(kept) is str:
        return 0 if kept == corr else None
    if type(kept) is tuple:
        return kept[1] if kept[0] == corr else None
    return kept.get(corr)  # type: ignore[union-attr]


def accs(acceptances: Acceptance | tuple[Acceptance, ...] | None) -> tuple[Acceptance, ...]:
    """`_MessageDraft.acceptances` as a tuple."""
    if acceptances is None:
        return ()
    return (acceptances,) if type(acceptances) is Acceptance else acceptances  # type: ignore[return-value]


_draft_start = operator.attrgetter("start")
# `_Pass.key`'s int: the MTA's number, txn, conn in 10, 20, 30 bits from the top (60 bits: a 32-byte int, as small as
# a big one). conn, the part that varies most, in the low bits: a dict places an int by its low bits, and with txn
# there (mostly 1) the keys crowded into the same slots (lookups of two 1 M event runs' keys took 10-60 % longer)
_CONN_BITS = 30
_CONN_END = 1 << _CONN_BITS
_TXN_END = 1 << 20
_MTA_SHIFT = _CONN_BITS + 20
_MTA_END = 1 << 10
_by_corr = operator.attrgetter("corr")


def _sorted_tuple(acceptances: Acceptance | tuple[Acceptance, ...] | None) -> tuple[Acceptance, ...]:
    if acceptances is None:
        return ()
    if type(acceptances) is Acceptance:
        return (acceptances,)
    return tuple(sorted(accs(acceptances)))


class _MessageDraft:
    # two unused slots make a draft the size of the `Message` it becomes (120 bytes with its GC header, 11 slots):
    # the allocator reuses a freed draft's memory for a frozen message, where a draft of 104 bytes
    # left its slot for nothing of that size (~100 MB more at the end of a 10 M event join)
    __slots__ = ("_pad0", "_pad1", "acceptances", "attempts", "cls", "discarded", "first_5xx", "first_ok", "first_req",
                 "requests", "resends")

    def __init__(self) -> None:
        self.cls: str | None = None
        self.first_req = math.inf
        self.first_ok = math.inf
        self.requests = 0
        # None until the first one (most messages have no resend, one acceptance, one attempt: no empty lists)
        self.resends: list[float] | None = None
        # None, then the first one itself, then a tuple grown by one each time (most messages are accepted once: no
        # 1-tuple each through the pass, ~50 MB at 1 M messages; `accs`)
        self.acceptances: Acceptance | tuple[Acceptance, ...] | None = None
        # its attempts' indices in the join's `Attempts`, ascending: None, then the one index itself, then a list
        # (most messages have one attempt: no list for it)
        self.attempts: int | list[int] | None = None
        self.first_5xx: Bounce | None = None
        self.discarded = 0

    def freeze(self, corr: str, attempts: Attempts) -> Message:
        ai = self.attempts
        return Message(corr, self.cls, self.first_req, self.first_ok, self.requests,
                       tuple(sorted(self.resends)) if self.resends else (),
                       _sorted_tuple(self.acceptances),
                       () if ai is None else tuple(ai) if type(ai) is list else ai,  # type: ignore[arg-type]
                       self.first_5xx, self.discarded, attempts)


@dataclass(slots=True)
class _Pass:
    """The state of one pass over the events; one small method per event kind."""

    origin: Origin
    msgs: dict[str, _MessageDraft] = field(default_factory=dict)
    attempts: dict[int | AttemptKey, _AttemptDraft] = field(default_factory=dict)  # by `key`
    requests: Requests = field(default_factory=Requests)
    ack_lost: set[tuple[str, Any, Any, str | None]] = field(default_factory=set)
    depth: list[tuple[float, float]] = field(default_factory=list)
    fired: list[FaultAction] = field(default_factory=list)
    undone: dict[int, float] = field(default_factory=dict)
    discarded_by_mta: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    mtas_seen: set[str] = field(default_factory=set)
    throttled: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    webhooks: WebhookTally = field(default_factory=lambda: WebhookTally(derived_corr_accepted=True))
    # acceptances by a source not named `mta/<name>` (none in practice): (corr, index) -> source, so that the
    # webhook tally's per-id acceptances can be rebuilt from the messages' own at the end instead of held twice
    odd_sources: dict[tuple[str, int], str] = field(default_factory=dict)
    shared: dict[tuple[int, ...], tuple[int, ...]] = field(default_factory=dict)  # one tuple per code sequence
    t_last: float = 0.0
    mta_base: dict[str, int] = field(default_factory=dict)  # per MTA name, its number shifted into place, for `key`
    mta_names: list[str] = field(default_factory=list)  # by number

    def key(self, mta: str, conn: Any, txn: Any) -> int | AttemptKey:
        """The `attempts` key of (mta, conn, txn): one int packing the MTA's number, conn and txn when they are ints
        in range (nearly always), else the tuple itself. An int is 32 bytes, where the tuple with its conn int took
        ~96 (~90 MB at 1.5 M attempts). The same (mta, conn, txn) gets the same key whatever the order of events."""
        if type(conn) is int and type(txn) is int and 0 <= conn < _CONN_END and 0 <= txn < _TXN_END:
            base = self.mta_base.get(mta)
            if base is None:
                n = len(self.mta_names)
                if n >= _MTA_END:
                    return (mta, conn, txn)
                base = self.mta_base[mta] = n << _MTA_SHIFT
                self.mta_names.append(mta)
            return base | txn << _CONN_BITS | conn
        return (mta, conn, txn)

    def key_tuple(self, key: int | AttemptKey) -> AttemptKey:
        """The (mta, conn, txn) of an `attempts` key."""
        if type(key) is int:
            return self.mta_names[key >> _MTA_SHIFT], key & (_CONN_END - 1), (key >> _CONN_BITS) & (_TXN_END - 1)
        return key  # type: ignore[return-value]

    def key_mta(self, key: int | AttemptKey) -> str:
        if type(key) is int:
            return self.mta_names[key >> _MTA_SHIFT]
        mta: str = key[0]  # type: ignore[index]
        return mta

    def message(self, corr: str) -> _MessageDraft:
        m = self.msgs.get(corr)
        if m is None:
            m = self.msgs[corr] = _MessageDraft()
        return m

    def attempt(self, mta: str, conn: Any, txn: Any, t: float) -> _AttemptDraft:
        key = self.key(mta, conn, txn)
        a = self.attempts.get(key)
        if a is None:
            a = self.attempts[key] = _AttemptDraft(key, t)
        return a

    def reply_sent(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        code: int = d.get("code") or 0
        if code == 421:
            self.throttled[mta_of(source)].append(t)
        txn: int = d.get("txn") or 0
        if txn < 1:
            return
        mta = mta_of(source)
        conn = d.get("conn")
        base = self.mta_base.get(mta)  # `key`, inline for the most frequent event
        if base is not None and type(conn) is int and type(txn) is int and 0 <= conn < _CONN_END and txn < _TXN_END:
            key: int | AttemptKey = base | txn << _CONN_BITS | conn
        else:
            key = self.key(mta, conn, txn)
        a = self.attempts.get(key)
        if a is None:
            a = self.attempts[key] = _AttemptDraft(key, t)
        elif t < a.start:
            a.start = t
        if t > a.end:
            a.end = t
        codes = (*a.codes, code)
        a.codes = self.shared.setdefault(codes, codes)
        if corr is None:
            return
        a.add_corr(corr)
        if code >= 500:
            m = self.message(corr)
            if m.first_5xx is None or t < m.first_5xx.t:
                m.first_5xx = Bounce(t, mta, (mta, conn, txn))

    def request_completed(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        cls = d.get("class")
        if type(cls) is str:
            cls = sys.intern(cls)  # one string per class, not one per request
        self.requests.add(t, cls, bool(d.get("ok")), float(d.get("latency_ms") or 0.0))
        if corr is None:
            return
        m = self.message(corr)
        m.requests += 1
        if cls is not None:
            m.cls = str(cls)
        if t < m.first_req:
            m.first_req = t
        if d.get("ok") and t < m.first_ok:
            m.first_ok = t
        if d.get("resend"):
            if m.resends is None:
                m.resends = [t]
            else:
                m.resends.append(t)

    def message_kept(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        """mta.message.accepted and mta.message.discarded (a blackholing 250)."""
        accepted = kind == EventKind.MTA_MESSAGE_ACCEPTED
        if accepted:
            self.webhooks.add(kind, source, t, d, corr)
        mta = mta_of(source)
        self.mtas_seen.add(mta)
        a = self.attempt(mta, d.get("conn"), d.get("txn"), t)
        if t < a.start:  # a vendor records the acceptance before its reply: the attempt starts here
            a.start = t
        if t > a.end:
            a.end = t
        a.accepted = True
        if not accepted:
            self.discarded_by_mta[mta] += 1
        if corr is None:
            return
        a.add_corr(corr)
        m = self.message(corr)
        if not accepted:
            m.discarded += 1
            return
        ack = sys.intern(str(d.get("ack", "sent")))
        a.ack = ack
        before = m.acceptances
        this = Acceptance(t, mta, ack)
        if before is None:
            i = 0
            m.acceptances = this
        elif type(before) is Acceptance:
            i = 1
            m.acceptances = (before, this)
        else:
            i = len(before)
            m.acceptances = (*before, this)
        if not source.startswith("mta/"):
            self.odd_sources[(corr, i)] = source
        if ack != "lost":
            kept = a.kept
            if type(kept) is dict:
                kept[corr] = i
            elif kept is None or _kept_at(kept, corr) is not None:
                a.kept = corr if i == 0 else (corr, i)
            else:
                a.kept = {**kept_map(kept), corr: i}

    def request_received(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        """A vendor request held or never answered (hang, reset): the start of its delivery attempt."""
        a = self.attempt(mta_of(source), d.get("conn"), d.get("txn"), t)
        if t < a.start:
            a.start = t
        if t > a.end:
            a.end = t
        if corr is not None:
            a.add_corr(corr)
            self.message(corr)

    def ack_was_lost(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        """Stored, but the client was gone before its 250 (RFC 1047)."""
        self.ack_lost.add((mta_of(source), d.get("conn"), d.get("txn"), corr))

    def depth_sampled(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        self.depth.append((t, float(d.get("depth") or 0.0)))

    def action_fired(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        self.fired.append(FaultAction(t, int(d.get("action", -1)), str(d.get("target", "")),
                                      str(d.get("what", ""))))

    def action_undone(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        self.undone[int(d.get("action", -1))] = t

    def webhook(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        """The vendors' mta.webhook.* and the SUT's own sut.webhook.* decisions."""
        self.webhooks.add(kind, source, t, d, corr)

    def mta_seen(self, kind: str, source: str, corr: str | None, d: Mapping[str, Any], t: float) -> None:
        self.mtas_seen.add(mta_of(source))

    def _attempt_columns(self, drafts: list[_AttemptDraft]) -> tuple[Attempts, array[int]] | None:
        """The drafts as `Attempts` in (start, mta) order (a stable sort: ties keep the drafts' order), a column at a
        time, and that order (the draft behind each attempt); None when some key is not a packed int. One attempt
        at a time this took ~1 µs each, 13 s of a 10 M event report."""
        import numpy as np  # here: the second process of `analysis.split` never needs it (~15 MB less there)

        n = len(drafts)
        if not all(type(d.key) is int for d in drafts):
            return None

        def col(typecode: str, values: Any) -> array[Any]:
            out = array(typecode)
            out.frombytes(np.ascontiguousarray(values).tobytes())
            return out

        keys = np.fromiter((d.key for d in drafts), dtype=np.int64, count=n)
        mta_n = (keys >> _MTA_SHIFT).astype(np.uint32)
        names = self.mta_names
        rank = np.empty(len(names), dtype=np.int64)  # each MTA number's place in name order
        rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        start = np.fromiter((d.start for d in drafts), dtype=np.float64, count=n)
        order = np.lexsort((rank[mta_n], start)) if n else np.zeros(0, dtype=np.int64)
        codes_ix: dict[tuple[int, ...], int] = {}
        codes_n = np.fromiter((codes_ix.setdefault(d.codes, len(codes_ix)) for d in drafts), dtype=np.uint32,
                              count=n)[order]
        code_values = list(codes_ix)
        ack_ix: dict[str | None, int] = {}
        ack_n = np.fromiter((ack_ix.setdefault(d.ack, len(ack_ix)) for d in drafts), dtype=np.uint32, count=n)[order]
        deciding_of = np.array([deciding(c) for c in code_values] or [0], dtype=np.int32)
        by_order = col("q", order.astype(np.int64))

        attempts = Attempts.of_columns(
            list(names), col("I", mta_n[order]), col("i", (keys & (_CONN_END - 1)).astype(np.int32)[order]),
            col("i", ((keys >> _CONN_BITS) & (_TXN_END - 1)).astype(np.int32)[order]), col("d", start[order]),
            col("d", np.fromiter((d.end for d in drafts), dtype=np.float64, count=n)[order]),
            [drafts[j].corrs for j in by_order], col("i", deciding_of[codes_n]),
            bytearray(np.fromiter((d.accepted for d in drafts), dtype=np.bool_, count=n)[order].tobytes()),
            (code_values, col("I", codes_n)), (list(ack_ix), col("I", ack_n)))
        return attempts, by_order

    def finish(self) -> Join:
        for mta, conn, txn, corr in self.ack_lost:  # files are read in any order: the acceptance may come after it
            att = self.attempts.get(self.key(mta, conn, txn))
            if att is None or corr is None:
                continue
            i = _kept_at(att.kept, corr)
            if i is not None:  # the last acceptance of that id in that transaction
                lost_one = self.msgs[corr]
                acc = accs(lost_one.acceptances)
                lost = Acceptance(acc[i].t, acc[i].mta, "lost")
                lost_one.acceptances = lost if len(acc) == 1 else (*acc[:i], lost, *acc[i + 1:])
                att.ack = "lost"
        if self.webhooks.seen:  # every acceptance of every id, as (t, source): the silence failovers read them
            odd = self.odd_sources
            self.webhooks.corr_accepted = {
                c: {(acc.t, odd.get((c, i)) or "mta/" + acc.mta) for i, acc in enumerate(accs(m.acceptances))}
                for c, m in self.msgs.items() if m.acceptances}
        # the attempts into columns by (start, mta) (two stable sorts: ties keep the order the drafts were made), each
        # draft dropped as it is written, so a big run never holds both at once; each message gets its attempts'
        # indices, ascending (so its attempts are by (start, mta) too)
        drafts: list[_AttemptDraft | None] = list(self.attempts.values())
        self.attempts.clear()
        msgs = self.msgs
        made = self._attempt_columns(drafts)  # type: ignore[arg-type]
        if made is not None:
            attempts, order = made
        else:  # some key is not a packed int: one attempt at a time
            key_mta = self.key_mta
            drafts.sort(key=lambda a: key_mta(a.key))  # type: ignore[union-attr]
            drafts.sort(key=_draft_start)
            attempts, order = Attempts(), array("q", range(len(drafts)))
            for draft in drafts:
                assert draft is not None
                draft.freeze(attempts, self.key_tuple(draft.key))
        for i, j in enumerate(order):  # in (start, mta) order: each message's indices ascending
            draft = drafts[j]
            drafts[j] = None
            assert draft is not None
            for c in draft.corr_ids():
                story = msgs.get(c)
                if story is not None:
                    if story.attempts is None:
                        story.attempts = i
                    elif type(story.attempts) is list:
                        story.attempts.append(i)
                    else:
                        story.attempts = [story.attempts, i]  # type: ignore[list-item]
        del drafts, order
        self.mtas_seen.update(attempts.mtas_named())
        if not self.requests:  # MTA events only (a unit test of a sender): every message an MTA saw was "requested"
            starts_of = attempts.starts
            for m in msgs.values():
                ai = m.attempts
                ids: Iterable[int] = () if ai is None else ai if isinstance(ai, list) else (ai,)
                starts = [starts_of[i] for i in ids]
                starts += [acc.t for acc in accs(m.acceptances)]
                if starts:
                    m.first_req = m.first_ok = min(starts)
        # frozen in the order the drafts were made, then sorted: the drafts are freed in the order they were
        # allocated, so whole pools of memory come free for the frozen records (in sorted order they came free
        # one slot here and there, and a 10 M event run peaked ~250 MB higher)
        corrs = list(self.msgs)
        stories: list[_MessageDraft | None] = list(self.msgs.values())
        self.msgs.clear()
        kept: list[Message] = []
        for i, c in enumerate(corrs):
            story = stories[i]
            stories[i] = None
            assert story is not None
            if story.first_req < math.inf:
                kept.append(story.freeze(c, attempts))
        del corrs, stories
        kept.sort(key=_by_corr)
        messages = {m.corr: m for m in kept}
        del kept
        return Join(messages, attempts, self.requests,
                    tuple(self.depth), tuple(self.fired), dict(self.undone), dict(self.discarded_by_mta),
                    frozenset(self.mtas_seen), {k: tuple(v) for k, v in self.throttled.items()}, self.t_last,
                    self.webhooks.metrics(),
                    {mta_of(src): n for src, n in self.webhooks.failed_over_in_silence_by_receiver().items()}
                    if self.webhooks.seen else None)


Handler = Callable[[_Pass, str, str, "str | None", Mapping[str, Any], float], None]  # (kind, source, corr, data, t)
_HANDLERS: dict[str, Handler] = {
    EventKind.MTA_REPLY_SENT: _Pass.reply_sent,
    EventKind.LOAD_REQUEST_COMPLETED: _Pass.request_completed,
    EventKind.MTA_MESSAGE_ACCEPTED: _Pass.message_kept,
    EventKind.MTA_MESSAGE_DISCARDED: _Pass.message_kept,
    EventKind.MTA_MESSAGE_ACK_LOST: _Pass.ack_was_lost,
    EventKind.MTA_REQUEST_RECEIVED: _Pass.request_received,
    EventKind.SUT_QUEUE_DEPTH_SAMPLED: _Pass.depth_sampled,
    EventKind.RUN_ACTION_FIRED: _Pass.action_fired,
    EventKind.RUN_ACTION_UNDONE: _Pass.action_undone,
    EventKind.MTA_CONNECTION_OPENED: _Pass.mta_seen,
    EventKind.MTA_LISTENER_OPENED: _Pass.mta_seen,
    **{k: _Pass.webhook for k in EventKind if k.startswith(("mta.webhook.", "sut.webhook."))},
}


def join(events: Iterable[Event], origin: Origin = Origin()) -> Join:
    """Every message's story from `events` (read once), on `origin`'s time base."""
    p = _Pass(origin)
    t0, inv = origin.t0, 1.0 / origin.scale
    handlers = _HANDLERS
    for e in events:
        t = (e.t_s - t0) * inv
        if t > p.t_last:
            p.t_last = t
        handle = handlers.get(e.kind)
        if handle is not None:
            handle(p, e.kind, e.source, e.corr, e.data, t)
    return p.finish()


def join_records(records: Iterable[dict[str, Any]], origin: Origin = Origin(), *,
                 again: Callable[[], Iterable[dict[str, Any]]] | None = None) -> Join:
    """`join` over checked event records as read from disk (flat dicts: ``t_s`` a float, ``source``/``kind``
    strings, ``corr`` a string or absent/null; `EventStore.records`): the same join, without building an `Event`
    per line. The handlers read only data fields, never the reserved ones, so the flat record is the event's data.

    `again`: the same records once more. Given, the acceptances' (message id, recipient) that webhook lag needs
    are not held through the pass but read again at the end, and only when some vendor sent webhooks."""
    p = _Pass(origin)
    p.webhooks.deferred_accepted = again is not None
    pass_records(p, records)
    return end_pass(p, again)


def pass_records(p: _Pass, records: Iterable[dict[str, Any]]) -> None:
    """Feed `records` (in order) to the pass `p`: `join_records`' loop, also run by `analysis.split` on each part of
    a run's events."""
    t0, inv = p.origin.t0, 1.0 / p.origin.scale
    handlers = _HANDLERS
    t_last = p.t_last
    intern = sys.intern  # one string per correlation id, however many events name it
    for r in records:
        t = (r["t_s"] - t0) * inv
        if t > t_last:
            t_last = t
        kind = r["kind"]
        handle = handlers.get(kind)
        if handle is not None:
            corr = r.get("corr")
            handle(p, kind, r["source"], intern(corr) if corr is not None else None, r, t)
    p.t_last = t_last


def end_pass(p: _Pass, again: Callable[[], Iterable[dict[str, Any]]] | None) -> Join:
    """The join from a pass that has read every record: the webhook lag's second read (`join_records`), then
    `finish`."""
    if again is not None and p.webhooks.seen:
        t0, inv = p.origin.t0, 1.0 / p.origin.scale
        for r in again():
            if r["kind"] == EventKind.MTA_MESSAGE_ACCEPTED:
                p.webhooks.add_accepted(r["source"], (r["t_s"] - t0) * inv, r)
    return p.finish()


def origin_of(run_events: Iterable[Event], scenario: Mapping[str, Any]) -> Origin:
    """The time base from the run's own events (run.phase.changed load / drain, run.started's time_scale) and
    the scenario's time_scale, which wins."""
    scale = scenario.get("time_scale")
    t0: float | None = None
    drain: float | None = None
    notes: list[str] = []
    for e in run_events:
        if e.kind == EventKind.RUN_PHASE_CHANGED:
            phase = e.data.get("phase")
            if phase == "load":
                t0 = float(e.data.get("load_t0_s", e.t_s))  # type: ignore[arg-type]
            elif phase == "drain":
                drain = e.t_s
        elif e.kind == EventKind.RUN_STARTED and scale is None:
            scale = e.data.get("time_scale")
    if t0 is None:
        t0 = 0.0
        notes.append("no run.phase.changed load event: times are seconds since the run clock's origin")
    try:
        scale_f = float(scale) if scale is not None else 1.0
    except (TypeError, ValueError):
        scale_f = 1.0
    return Origin(scale_f if scale_f > 0 else 1.0, t0, drain, tuple(notes))
