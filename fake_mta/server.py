"""FakeMTA: one scripted SMTP server on real TCP (port 0 friendly), recording every connection, reply and message."""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from maildrill.fake_mta.behaviors import Behavior, Throttle, build, by_verb, refuses
from maildrill.fake_mta.clock import Clock, MonotonicClock
from maildrill.fake_mta.config import BehaviorSpec, MTASpec, Verb, parse_behaviors
from maildrill.fake_mta.listener import Listener
from maildrill.fake_mta.net import is_loopback
from maildrill.fake_mta.presets import GENERIC, persona
from maildrill.fake_mta.recording import MemoryRecorder, Recorder
from maildrill.fake_mta.session import MTAProtocol, escape_line
from maildrill.fake_mta.smtp_setup import make_authenticator
from pydantic import BaseModel

from maildrill.vocabulary import EventKind

_VERP = re.compile(r"^[^@+]+\+(?P<local>[^=@]+)=(?P<domain>[^@]+)@")
# How many accepted Message-IDs an MTA remembers for its delivery-status lookup (about 200 bytes each, so
# ~20 MB at the cap); the oldest is forgotten first. A sender asks about a message seconds or minutes after
# sending it: 100,000 is over an hour of a drill at 20 messages/s, and keeps a long soak's memory flat.
DEFAULT_MESSAGE_INDEX_CAP = 100_000


class MessageIndex:
    """The Message-IDs an MTA accepted, for `GET /mtas/{name}/messages/{id}`: the newest `cap` of them (the
    first acceptance of each; a duplicate keeps the first's time and ack), oldest forgotten first. `cap` 0
    remembers none. Nothing else is kept per message: the events are on disk, the counters are counts."""

    def __init__(self, cap: int = DEFAULT_MESSAGE_INDEX_CAP) -> None:
        if cap < 0:
            raise ValueError(f"message index cap {cap}: must be >= 0 (0 remembers no Message-ID)")
        self.cap = cap
        self.forgotten = 0  # evicted so far: a lookup of one of those answers 404 like an unknown id
        self._seen: dict[str, tuple[float, str]] = {}  # message_id -> (t_s, ack)
        self._order: deque[str] = deque()  # insertion order, for the eviction

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, message_id: str, t_s: float, ack: str) -> None:
        if self.cap == 0 or message_id in self._seen:
            return
        self._seen[message_id] = (t_s, "lost" if ack == "lost" else "sent")  # interned: no string per entry
        self._order.append(message_id)
        if len(self._order) > self.cap:
            del self._seen[self._order.popleft()]
            self.forgotten += 1

    def get(self, message_id: str) -> dict[str, Any] | None:
        found = self._seen.get(message_id)
        if found is None:
            return None
        return {"message_id": message_id, "accepted": True, "t_s": found[0], "ack": found[1]}


def behaviors_json(specs: Sequence[BehaviorSpec]) -> str:
    return json.dumps([{"kind": s.kind} | s.model_dump(mode="json", exclude_none=True) for s in specs],
                      separators=(",", ":"))


class FakeMTA:
    """`async with FakeMTA(MTASpec(...)) as mta:` serves SMTP on ``mta.host:mta.port`` until the block ends.

    Events go to `recorder` under source ``mta/<name>`` (a MemoryRecorder when none is given, in
    ``mta.recorder.events``). Binding a non-loopback address needs ``allow_remote=True``. The delivery-status
    lookup remembers the newest ``message_index_cap`` accepted Message-IDs (see MessageIndex).
    Raises OSError (errno EADDRINUSE) when the port is taken.
    """

    def __init__(self, spec: MTASpec | None = None, *, recorder: Recorder | None = None, clock: Clock | None = None,
                 seed: int = 0, allow_remote: bool = False, reuse_port: bool = False,
                 message_index_cap: int = DEFAULT_MESSAGE_INDEX_CAP) -> None:
        self.spec = spec = spec or MTASpec()
        if not allow_remote and not is_loopback(spec.host):
            raise ValueError(f"fake MTA {spec.name!r}: host {spec.host!r} is not loopback; a fault-injecting SMTP "
                             "server on a network is a way in. Pass allow_remote=True (CLI: --allow-remote) "
                             "to bind it.")
        self.name = spec.name
        self.host = spec.host
        self._listener = Listener(f"fake MTA {self.name!r}", spec.host, spec.port, self._protocol,
                                  lambda: self.recorder, reuse_port=reuse_port)
        self.persona = persona(spec.preset)
        self.hostname = spec.hostname or (self.persona.hostname if self.persona is not GENERIC
                                          else f"{spec.name}.mx.drill.test")
        self.banner = f"220 {self.hostname} {self.persona.banner}"
        self.clock: Clock = clock or MonotonicClock()
        self.recorder: Recorder = recorder if recorder is not None else MemoryRecorder(f"mta/{self.name}", self.clock)
        self.seed = seed
        self.rng = random.Random(f"{seed}:{self.name}")
        self._corr_rx = re.compile(spec.corr_pattern)
        self.tls_context: ssl.SSLContext | None = None
        self.authenticate = make_authenticator(spec.auth.username, spec.auth.password) if spec.auth else None
        self._ehlo_plain, self._ehlo_tls = self._ehlo_lines()
        self.behaviors: list[BehaviorSpec] = []
        self.runtime: list[Behavior] = []
        self.watchers: dict[Verb, tuple[Behavior, ...]] = {}
        self._install(list(spec.behaviors) if spec.behaviors else self.persona.default_behaviors())
        self.connections: set[MTAProtocol] = set()
        self._conn_seq = 0
        self._started = False
        self._timers: list[asyncio.TimerHandle] = []
        self.message_index = MessageIndex(message_index_cap)
        self.replies_by_code: Counter[int] = Counter()
        self.counts: Counter[str] = Counter()

    # --- behaviours -------------------------------------------------------------------------------
    def _install(self, specs: list[BehaviorSpec]) -> None:
        self.behaviors = specs
        self.runtime = build(specs, self.persona)
        self.watchers = by_verb(self.runtime)

    def set_behaviors(self, behaviors: Sequence[BehaviorSpec | dict[str, Any]], *, by: str = "api") -> None:
        """Replace the behaviour list; applies from the next command on every open connection.
        go_dark refuse closes the listener and open connections; leaving it reopens the same port.
        Raises pydantic.ValidationError on a bad list (nothing changes then)."""
        specs = parse_behaviors([b.model_dump() if isinstance(b, BaseModel) else b for b in behaviors], for_mta=True)
        was_refusing = refuses(self.runtime)
        self._install(specs)
        self.recorder.record(EventKind.MTA_BEHAVIORS_CHANGED, None, behaviors=behaviors_json(specs), by=by)
        if not self._started:
            return
        if refuses(self.runtime) and not was_refusing:
            self._listener.close("go_dark refuse")
            for proto in list(self.connections):
                proto.close("server", "go_dark refuse: listener and connections closed")
        elif was_refusing and not refuses(self.runtime):
            self._listener.open("behaviors changed")

    def reset(self, *, by: str = "api") -> None:
        """Forget greylist triplets and token buckets; reseed the probability RNG."""
        for b in self.runtime:
            b.reset()
        self.rng = random.Random(f"{self.seed}:{self.name}")
        self.recorder.record(EventKind.MTA_RESET, None, by=by)

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        if self.spec.starttls and self.tls_context is None:
            from maildrill.fake_mta.tls import server_context

            self.tls_context = await asyncio.to_thread(server_context)
        self._started = True
        await self._listener.start(refusing=refuses(self.runtime))
        loop = asyncio.get_running_loop()
        for phase in self.spec.timeline:
            self._timers.append(loop.call_later(phase.at_s, self._phase, phase.behaviors))

    def _phase(self, behaviors: list[BehaviorSpec]) -> None:
        self.set_behaviors(behaviors, by="timeline")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await self._listener.stop(self._close_connections, lambda: not self.connections)

    def _close_connections(self) -> None:
        for proto in list(self.connections):
            proto.close("server", "server stopped")

    async def __aenter__(self) -> FakeMTA:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (bound at start when the spec says 0)."""
        return self._listener.port

    def _protocol(self) -> MTAProtocol:
        self._conn_seq += 1
        return MTAProtocol(self, self._conn_seq)

    @property
    def listening(self) -> bool:
        return self._listener.listening

    # --- what sessions report -------------------------------------------------------------------
    def connection_opened(self, proto: MTAProtocol, peer: Any) -> None:
        self.connections.add(proto)
        self.counts["connections"] += 1
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.recorder.record(EventKind.MTA_CONNECTION_OPENED, None, conn=proto.conn, peer=peer_s)

    def connection_closed(self, proto: MTAProtocol, by: str, reason: str) -> None:
        self.connections.discard(proto)
        for b in self.runtime:
            if isinstance(b, Throttle):
                b.forget_connection(proto.conn)
        self.recorder.record(EventKind.MTA_CONNECTION_CLOSED, None, conn=proto.conn, by=by, reason=reason)

    def reply_sent(self, proto: MTAProtocol, code: int, enhanced: str | None, text: str, closes: bool) -> None:
        self.replies_by_code[code] += 1
        env = proto.envelope
        mail_from = proto.sender or (env.mail_from if env is not None else None)
        verb = proto.verb
        if verb in ("DATA", "DOT") and env is not None and env.rcpt_tos:
            self.recorder.record(EventKind.MTA_REPLY_SENT, proto.corr, conn=proto.conn, txn=proto.txn, verb=verb,
                                 code=code, enhanced=enhanced, text=text, behavior=proto.decider, closes=closes,
                                 mail_from=mail_from, rcpt=env.rcpt_tos[0], rcpt_count=len(env.rcpt_tos))
            return
        self.recorder.record(EventKind.MTA_REPLY_SENT, proto.corr, conn=proto.conn, txn=proto.txn, verb=verb, code=code,
                             enhanced=enhanced, text=text, behavior=proto.decider, closes=closes,
                             mail_from=mail_from, rcpt=proto.rcpt)

    def protocol_error(self, proto: MTAProtocol, error: str, line: bytes) -> None:
        self.counts["protocol_errors"] += 1
        self.recorder.record(EventKind.MTA_PROTOCOL_ERROR, None, conn=proto.conn, error=error, line=escape_line(line))

    def message_stored(self, proto: MTAProtocol, mail_from: str, rcpts: list[str], size: int,
                       message_id: str | None, kind: str, ack: str) -> None:
        """One mta.message.accepted (or .discarded) per recipient, before any reply about it is sent."""
        event = EventKind.MTA_MESSAGE_ACCEPTED if kind == "accepted" else EventKind.MTA_MESSAGE_DISCARDED
        for rcpt in rcpts:
            data: dict[str, Any] = {"conn": proto.conn, "txn": proto.txn, "mail_from": mail_from, "rcpt": rcpt,
                                    "size_bytes": size, "message_id": message_id}
            if kind == "accepted":
                data["ack"] = ack
            else:
                data["reason"] = f"{proto.decider}: 250 sent, message never delivered"
            self.recorder.record(event, self.rcpt_corr(rcpt), **data)
        self.counts[f"messages_{kind}"] += len(rcpts)
        if kind == "accepted" and message_id:
            self.message_index.add(message_id, self.clock.now(), ack)
        if ack == "lost":
            self.counts["acks_lost"] += len(rcpts)

    def ack_unread(self, proto: MTAProtocol, rcpts: list[str]) -> None:
        """The client was gone before the 250 for a stored message could be sent (it hung up or died while a
        tarpit held the reply): to the sender that is a lost 250, and a retry is a duplicate (RFC 1047)."""
        for rcpt in rcpts:
            self.recorder.record(EventKind.MTA_MESSAGE_ACK_LOST, self.rcpt_corr(rcpt), conn=proto.conn, txn=proto.txn,
                                 rcpt=rcpt, reason="the client was gone before the 250 was sent")
        self.counts["acks_lost"] += len(rcpts)

    def lookup_message(self, message_id: str) -> dict[str, Any] | None:
        """The delivery status of a Message-ID this MTA accepted (angle brackets optional), or None."""
        return self.message_index.get(message_id.strip().strip("<>"))

    # --- helpers for sessions -------------------------------------------------------------------
    def rcpt_corr(self, address: str) -> str | None:
        m = self._corr_rx.search(address)
        return m.group("corr") if m else None

    def sender_corr(self, address: str) -> str | None:
        """corr of a VERP sender ``bounce+<local>=<domain>@host`` (its decoded recipient), else None."""
        m = _VERP.match(address)
        return self.rcpt_corr(f"{m.group('local')}@{m.group('domain')}") if m else None

    def _ehlo_lines(self) -> tuple[str, str]:
        caps = ["PIPELINING", f"SIZE {self.spec.data_size_limit}", "8BITMIME"]
        auth = [f"AUTH {' '.join(self.spec.auth.mechanisms)}"] if self.spec.auth else []
        plain = [self.hostname, *caps, *(["STARTTLS"] if self.spec.starttls else []), *auth]
        tls = [self.hostname, *caps, *auth]

        def render(lines: list[str]) -> str:
            return "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines))

        return render(plain), render(tls)

    def ehlo_reply(self, *, tls_active: bool) -> str:
        return self._ehlo_tls if tls_active else self._ehlo_plain

    def describe(self) -> dict[str, Any]:
        """The JSON shape of GET /mtas entries."""
        return {"name": self.name, "host": self.host, "port": self.port, "preset": self.spec.preset,
                "listening": self.listening, "connections_open": len(self.connections),
                "behaviors": json.loads(behaviors_json(self.behaviors))}
