"""The join's pass over a big run in two processes: this one reads the first half of the run's event bytes, a
second Python process (`run_part`) reads the second half at the same time, and
its part of the pass is then folded into this one's. On 2 cores the read (parse and check every line) and the
join's handlers each run on half the lines, which is most of a report's time at millions of events.

The result is the serial pass's, exactly: the files are cut into one prefix and one suffix of the order the serial
read takes (file after file, sorted; a file cut at a line boundary), so folding the suffix's state after the
prefix's is the same as reading on (`_fold`: counts add, first and last times take the min and max, lists and
reply codes concatenate in order, "the last one wins" fields take the suffix's when it set one, acceptance
indices shift by the prefix's). The cut file's header is decided by the prefix's reader; when that reader did not
accept it (a file of another schema version, or no header line before the cut), or the second process fails in
any way, this process reads the suffix itself, so a damaged or odd run reads exactly as before, only slower.

Runs smaller than `SPLIT_MIN_BYTES`, machines with one core, and ``MAILDRILL_ANALYSIS_PROCESSES=1`` read in one
process: starting the second costs ~0.3 s.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from maildrill.harness.analysis.join import (
    Acceptance,
    Bounce,
    FaultAction,
    Join,
    Origin,
    _AttemptDraft,
    _MessageDraft,
    _Pass,
    accs,
    end_pass,
    join_records,
    kept_map,
    kept_of,
    pass_records,
)
from maildrill.harness.analysis.webhooks import WebhookTally
from maildrill.harness.events import EventKind
from maildrill.harness.store import ReadProblem, _Tail

SPLIT_MIN_BYTES = 32 << 20  # ~100 k events: below this one process is as fast
CHUNK = 50_000  # records per frame from the second process
ENV = "MAILDRILL_ANALYSIS_PROCESSES"
_END = marshal.dumps(("end", None))
_CHILD = "import sys; from maildrill.harness.analysis.split import run_part; run_part(sys.argv[1], sys.stdout.buffer)"


@dataclass(frozen=True)
class Part:
    """Lines of one file that begin in [start, end) (end None: to the end of the file)."""

    path: Path
    start: int = 0
    end: int | None = None


def cut(paths: list[Path], *, min_bytes: int | None = None,
        at: int | None = None) -> tuple[list[Part], list[Part]] | None:
    """The prefix and suffix of the serial read, about half of the bytes each (`at`: the prefix ends at the first
    line that begins at or after that many bytes of the files together), or None when the run is smaller than
    `min_bytes` or the cut leaves one side empty."""
    sizes = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except FileNotFoundError:
            sizes.append(0)
    total = sum(sizes)
    if total < max(1, SPLIT_MIN_BYTES if min_bytes is None else min_bytes):
        return None
    # the second process gets a little less than half: it also starts Python and marshals its state (~1-2 s at
    # 10 M events), and the two halves then end about together
    target, before = (total * 52 // 100 if at is None else at), 0
    for i, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        if before + size <= target:
            before += size
            continue
        at = _line_start_after(path, target - before)
        head = [Part(p) for p in paths[:i]]
        tail = [Part(p) for p in paths[i + 1:]]
        if at is None or at >= size:  # no line begins after the middle: cut after the file
            head.append(Part(path))
        elif at == 0:
            tail.insert(0, Part(path))
        else:
            head.append(Part(path, 0, at))
            tail.insert(0, Part(path, at))
        return (head, tail) if head and tail else None
    return None


def _line_start_after(path: Path, offset: int) -> int | None:
    """The offset of the first line that begins at or after `offset` (None: none does)."""
    if offset <= 0:
        return 0
    with open(path, "rb") as f:
        f.seek(offset - 1)
        while True:
            block = f.read(1 << 16)
            if not block:
                return None
            nl = block.find(b"\n")
            if nl >= 0:
                return f.tell() - len(block) + nl + 1


def processes() -> int:
    """How many processes the pass may use: 2 when the machine gives this process 2 cores or more, unless
    ``MAILDRILL_ANALYSIS_PROCESSES`` says 1."""
    if os.environ.get(ENV, "").strip() == "1":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def join_files(paths: list[Path], origin: Origin, problems: list[ReadProblem], *,
               again: Callable[[], Iterable[dict[str, Any]]] | None = None,
               halves: tuple[list[Part], list[Part]] | bool | None = True,
               how: dict[str, Any] | None = None) -> Join:
    """`join_records(EventStore.records(problems, paths), origin, again=again)`, in two processes when the run is
    big enough (the same join, the same problems in the same order).

    `halves`: True (decide: `cut` when `processes()` allows), None or False (one process), or the parts to use.
    `how`, when given, is told how the pass went: ``processes`` (1 or 2) and ``why`` when the second process's
    part was read here after all."""
    if halves is True:
        halves = cut(paths) if processes() > 1 else None
    if not halves:
        if how is not None:
            how["processes"] = 1
        return join_records(_read([Part(x) for x in paths], problems), origin, again=again)
    assert isinstance(halves, tuple)
    p = _Pass(origin)
    p.webhooks.deferred_accepted = again is not None
    head, tail = halves
    child = _start(tail, origin, deferred=p.webhooks.deferred_accepted)
    tails: dict[Path, _Tail] = {}
    first = len(problems)
    why = None
    try:  # whatever happens here (an error, Ctrl-C), the second process is stopped
        pass_records(p, _read(head, problems, tails))
        cut_tail = tails.get(tail[0].path) if tail[0].start else None
        if child is None:
            why = "the second process did not start"
        elif cut_tail is not None and not (cut_tail.header_checked and not cut_tail.rejected):
            why = f"{tail[0].path.name}: its header was not accepted before the cut"
        else:
            took = _take(child, p, problems, tail, cut_tail.lineno if cut_tail is not None else 0)
            if took is not True:
                why = "the second process failed"
            if took is None:  # it failed half-way through its frames: start again, reading everything here
                del problems[first:]
                p = _Pass(origin)
                p.webhooks.deferred_accepted = again is not None
                tails.clear()
                pass_records(p, _read(head, problems, tails))
    finally:
        if child is not None:
            _stop(child)
    if why is not None:  # read the suffix here, the cut file on with the reader that read its beginning
        pass_records(p, _read(tail, problems, tails))
    if how is not None:
        how["processes"] = 1 if why is not None else 2
        if why is not None:
            how["why"] = why
    return end_pass(p, again)


def _read(parts: list[Part], problems: list[ReadProblem],
          tails: dict[Path, _Tail] | None = None) -> Iterator[dict[str, Any]]:
    for part in parts:
        tail = tails.get(part.path) if tails is not None else None
        if tail is None:
            tail = _Tail(part.path)
            if tails is not None:
                tails[part.path] = tail
        yield from tail.records(problems, part.start, part.end)


# --- the second process ----------------------------------------------------------------------------
@dataclass
class _Child:
    """The second process, and the file it writes its frames to (`spool`): an unlinked temporary file, read here
    once it has exited. Through a pipe it stayed alive, holding its frames (~190 MB at 10 M events), until they had
    all been folded here, on top of this process's growing state; a file lets it end, and free all of its memory,
    first (the frames then sit in the page cache, which the kernel may write out, not in either process)."""

    proc: subprocess.Popen[bytes]
    spool: IO[bytes]


def _start(parts: list[Part], origin: Origin, *, deferred: bool) -> _Child | None:
    job = job_text(parts, origin, deferred=deferred)
    spool = None
    try:  # its stderr to a file, not a pipe: nothing it writes there can block it
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `_stop`)
        with tempfile.TemporaryFile() as err:
            return _Child(subprocess.Popen([sys.executable, "-c", _CHILD, job],
                                           stdin=subprocess.DEVNULL, stdout=spool, stderr=err), spool)
    except OSError:
        if spool is not None:
            spool.close()
        return None


def job_text(parts: list[Part], origin: Origin, *, deferred: bool) -> str:
    """What `run_part` reads: the parts, the time base, whether acceptances go to the webhook tally."""
    return json.dumps({"parts": [[str(x.path), x.start, x.end] for x in parts], "scale": origin.scale,
                       "t0": origin.t0, "deferred": deferred})


def _stop(child: _Child) -> None:
    if child.proc.poll() is None:
        child.proc.kill()
    child.proc.wait()
    child.spool.close()


def _frames(f: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """The second process's frames, each unmarshalled as it is read (its state is never all held twice)."""
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise EOFError("the second analysis process ended before its last frame")
        (size,) = struct.unpack("<Q", head)
        blob = f.read(size)
        if len(blob) < size:
            raise EOFError("the second analysis process ended inside a frame")
        kind, body = marshal.loads(blob)
        del blob
        if kind == "end":
            return
        yield kind, body


def _take(child: _Child, p: _Pass, problems: list[ReadProblem], parts: list[Part], base_line: int) -> bool | None:
    """Once the second process has ended, fold its part into `p` frame by frame: True when all went well; False when
    it failed before any frame was folded (`p` untouched: a non-zero exit folds nothing); None when its frames broke
    off after some were folded (`p` is then part-folded)."""
    if child.proc.wait() != 0:
        return False
    shift: dict[str, int] = {}  # corr -> acceptances the prefix had: the suffix's indices move up by that
    folded = False
    child.spool.seek(0)
    try:
        for kind, body in _frames(child.spool):
            _fold(p, kind, body, shift, problems, parts, base_line)
            folded = True
    except (EOFError, ValueError, TypeError, KeyError, IndexError, struct.error):
        return None if folded else False
    return True


def _fold(p: _Pass, kind: str, body: Any, shift: dict[str, int], problems: list[ReadProblem], parts: list[Part],
          base_line: int) -> None:
    """Apply one frame of the suffix's pass state after the prefix's (`p`), as if `p` had read on."""
    intern = sys.intern
    if kind == "messages":
        for corr, cls, first_req, first_ok, requests, resends, accepted, first_5xx, discarded in body:
            corr = intern(corr)
            m = p.msgs.get(corr)
            acceptances = tuple(Acceptance(t, intern(mta), intern(ack)) for t, mta, ack in accepted) if accepted else ()
            bounce = Bounce(first_5xx[0], intern(first_5xx[1]), _key(first_5xx[2])) if first_5xx else None
            if m is None:
                m = p.msgs[corr] = _MessageDraft()
                m.cls, m.first_req, m.first_ok, m.requests = cls, first_req, first_ok, requests
                m.resends, m.first_5xx, m.discarded = resends, bounce, discarded
                m.acceptances = _draft_accs(acceptances)
                continue
            if cls is not None:
                m.cls = cls
            if first_req < m.first_req:
                m.first_req = first_req
            if first_ok < m.first_ok:
                m.first_ok = first_ok
            m.requests += requests
            if resends:
                m.resends = (m.resends or []) + resends
            if acceptances:
                if m.acceptances is not None:
                    before = accs(m.acceptances)
                    shift[corr] = len(before)
                    m.acceptances = before + acceptances
                else:
                    m.acceptances = _draft_accs(acceptances)
            if bounce is not None and (m.first_5xx is None or bounce.t < m.first_5xx.t):
                m.first_5xx = bounce
            m.discarded += discarded
    elif kind == "attempts":
        for (mta, conn, txn), start, end, corrs, accepted, codes, ack, kept in body:
            key = p.key(intern(mta), conn, txn)
            # the child's one id as the str itself (`_AttemptDraft.corrs`), several as a tuple
            corrs = intern(corrs) if type(corrs) is str else tuple(intern(c) for c in corrs)
            a = p.attempts.get(key)
            if a is None and (kept is None or type(kept) is str):  # most attempts: new here, index 0 or nothing
                a = p.attempts[key] = _AttemptDraft(key, start)
                a.end, a.corrs, a.accepted, a.ack = end, corrs, accepted, ack
                a.codes = p.shared.setdefault(codes, codes)
                if kept is not None:
                    kept = intern(kept)
                    moved = shift.get(kept, 0)
                    a.kept = kept if not moved else (kept, moved)
                continue
            mine = {intern(c): i + shift.get(c, 0) for c, i in kept_map(kept).items()}
            if a is None:
                a = p.attempts[key] = _AttemptDraft(key, start)
                a.end, a.corrs, a.accepted, a.ack = end, corrs, accepted, ack
                a.codes = p.shared.setdefault(codes, codes)
                a.kept = kept_of(mine)
                continue
            if start < a.start:
                a.start = start
            if end > a.end:
                a.end = end
            for c in ((corrs,) if type(corrs) is str else corrs):
                a.add_corr(c)
            if accepted:
                a.accepted = True
            joined = (*a.codes, *codes)
            a.codes = p.shared.setdefault(joined, joined)
            if ack is not None:
                a.ack = ack
            if mine:
                a.kept = kept_of({**kept_map(a.kept), **mine})
    elif kind == "rest":
        _fold_rest(p, body, shift, problems, parts, base_line)


def _key(key: Any) -> tuple[str, Any, Any]:
    return (sys.intern(key[0]), key[1], key[2])


def _draft_accs(acceptances: tuple[Acceptance, ...]) -> Acceptance | tuple[Acceptance, ...] | None:
    """`_MessageDraft.acceptances` from a tuple: none, the one itself, or the tuple."""
    if not acceptances:
        return None
    return acceptances[0] if len(acceptances) == 1 else acceptances


def _fold_rest(p: _Pass, rest: dict[str, Any], shift: dict[str, int], problems: list[ReadProblem],
               parts: list[Part], base_line: int) -> None:
    intern = sys.intern
    p.requests.extend_columns(rest["req_t"], [intern(c) if c is not None else None for c in rest["req_cls"]],
                              rest["req_ok"], rest["req_lat"])
    for mta, conn, txn, corr in rest["ack_lost"]:
        p.ack_lost.add((intern(mta), conn, txn, intern(corr) if corr is not None else None))
    p.depth.extend((t, d) for t, d in rest["depth"])
    p.fired.extend(FaultAction(*f) for f in rest["fired"])
    p.undone.update(rest["undone"])
    for mta, n in rest["discarded"].items():
        p.discarded_by_mta[intern(mta)] += n
    p.mtas_seen.update(intern(m) for m in rest["mtas_seen"])
    for mta, ts in rest["throttled"].items():
        p.throttled[intern(mta)].extend(ts)
    for corr, i, source in rest["odd_sources"]:
        p.odd_sources[(intern(corr), i + shift.get(corr, 0))] = source
    for kind, source, t, d, corr in rest["tally"]:  # the suffix's webhook events, in their order
        p.webhooks.add(kind, source, t, d, intern(corr) if corr is not None else None)
    if rest["t_last"] > p.t_last:
        p.t_last = rest["t_last"]
    first = parts[0]
    for i, file, line, message in rest["problems"]:
        problems.append(ReadProblem(file, line + (base_line if i == 0 and first.start else 0), message))


class _LoggedTally(WebhookTally):
    """The second process's webhook tally: it keeps the events, in order, for the first process's tally."""

    def __init__(self, deferred: bool) -> None:
        super().__init__(derived_corr_accepted=True, deferred_accepted=deferred)
        self.log: list[tuple[str, str, float, dict[str, Any], str | None]] = []

    def add(self, kind: str, source: str, t: float, d: Any, corr: str | None = None) -> None:
        if kind == EventKind.MTA_MESSAGE_ACCEPTED and self.deferred_accepted:
            return  # the join's tally takes nothing from an acceptance then (its messages say it all)
        self.log.append((kind, source, t, dict(d), corr))
        super().add(kind, source, t, d, corr)


def run_part(job_text: str, out: IO[bytes]) -> None:
    """The second process: read the parts `job_text` (JSON) names, write its pass state to `out` as frames."""
    import gc

    job = json.loads(job_text)
    gc.disable()  # as in analyse_run: millions of records, none of them garbage
    p = _Pass(Origin(float(job["scale"]), float(job["t0"])))
    tally = p.webhooks = _LoggedTally(bool(job["deferred"]))
    problems: list[tuple[int, ReadProblem]] = []
    parts = [Part(Path(path), start, end) for path, start, end in job["parts"]]

    def records() -> Iterator[dict[str, Any]]:
        for i, part in enumerate(parts):
            tail = _Tail(part.path)
            tail.header_checked = part.start > 0  # the first process's reader decides the cut file's header
            mine: list[ReadProblem] = []
            yield from tail.records(mine, part.start, part.end)
            problems.extend((i, x) for x in mine)

    pass_records(p, records())

    # each frame written as it is made (`out` is a file the first process reads once this one has ended)
    def frame(kind: str, body: Any) -> None:
        blob = marshal.dumps((kind, body))
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)

    batch: list[Any] = []
    for corr, m in p.msgs.items():
        batch.append((corr, m.cls, m.first_req, m.first_ok, m.requests, m.resends,
                      [tuple(a) for a in accs(m.acceptances)] if m.acceptances is not None else None,
                      (m.first_5xx.t, m.first_5xx.mta, m.first_5xx.attempt) if m.first_5xx else None, m.discarded))
        if len(batch) >= CHUNK:
            frame("messages", batch)
            batch = []
    if batch:
        frame("messages", batch)
    batch = []
    for key, a in p.attempts.items():  # the key as (mta, conn, txn): MTA numbers are this process's own
        batch.append((p.key_tuple(key), a.start, a.end, a.corrs, a.accepted, a.codes, a.ack, a.kept))
        if len(batch) >= CHUNK:
            frame("attempts", batch)
            batch = []
    if batch:
        frame("attempts", batch)
    t, cls, ok, lat = p.requests.columns()
    frame("rest", {
        "req_t": t, "req_cls": cls, "req_ok": ok, "req_lat": lat, "ack_lost": list(p.ack_lost),
        "depth": p.depth, "fired": [tuple(f) for f in p.fired], "undone": p.undone,
        "discarded": dict(p.discarded_by_mta), "mtas_seen": list(p.mtas_seen),
        "throttled": dict(p.throttled), "odd_sources": [(c, i, s) for (c, i), s in p.odd_sources.items()],
        "tally": tally.log, "t_last": p.t_last,
        "problems": [(i, x.file, x.line, x.message) for i, x in problems]})
    del p, tally, batch
    out.write(struct.pack("<Q", len(_END)))
    out.write(_END)
    out.flush()

