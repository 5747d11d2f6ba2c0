"""One SMTP connection of a FakeMTA: aiosmtpd's state machine; behaviours decide replies, every reply is recorded.

aiosmtpd 1.4.6 lacks what a fault-injecting server needs: a connect-time hook (421/554 greeting,
hang before the banner), closing after a 421 (RFC 5321 §3.8), and control over the end of DATA.
So this subclass runs its own command loop and DATA reader (modelled on aiosmtpd's) and decides
MAIL/RCPT/HELO/AUTH through `_call_handler_hook`, the single point where aiosmtpd asks its handler.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from collections.abc import Mapping
from typing import Any, Protocol, cast

from aiosmtpd.smtp import MISSING, SMTP
from maildrill.fake_mta.behaviors import Action, Behavior, Context, Decision, evaluate
from maildrill.fake_mta.clock import Clock
from maildrill.fake_mta.config import MTASpec, Verb
from maildrill.fake_mta.reply import AUTH_REQUIRED, BAD_SEQUENCE, OK, START_DATA, TOO_MANY_ERRORS, parse_status
from maildrill.fake_mta.smtp_setup import FAST_INIT, NO_HOOKS, fast_init

HARD_ERROR_LIMIT = 20  # Postfix's smtpd_hard_error_limit: then 421 and close
COMMAND_LIMIT = 512  # RFC 5321 §4.5.3.1.4: command line incl. CRLF
KNOWN_VERBS = frozenset({"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP",
                         "AUTH", "STARTTLS"})
# A plain <local@domain>: parsed here; anything else goes through aiosmtpd's full RFC 5322 parser.
_SIMPLE_ADDR = re.compile(r"\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^\r\n>]*)>?[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def escape_line(line: bytes, limit: int = 80) -> str:
    """First `limit` bytes of a client line, printable (for mta.protocol.error)."""
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in line[:limit])


def message_id_of(content: bytes) -> str | None:
    head = content.split(b"\r\n\r\n", 1)[0]
    m = _MESSAGE_ID.search(head)
    return m.group(1).decode("utf-8", "replace").strip() if m else None


class SessionHost(Protocol):
    """What a session needs from the server it belongs to (FakeMTA implements it): its settings, the behaviours
    watching each verb, and where it reports what happened. The session never sees the rest of the server."""

    spec: MTASpec
    hostname: str
    banner: str
    clock: Clock
    rng: random.Random
    tls_context: ssl.SSLContext | None
    authenticate: Any  # an aiosmtpd authenticator, or None without AUTH

    @property
    def watchers(self) -> Mapping[Verb, tuple[Behavior, ...]]: ...
    @property
    def listening(self) -> bool: ...

    def connection_opened(self, proto: MTAProtocol, peer: Any) -> None: ...
    def connection_closed(self, proto: MTAProtocol, by: str, reason: str) -> None: ...
    def reply_sent(self, proto: MTAProtocol, code: int, enhanced: str | None, text: str, closes: bool) -> None: ...
    def protocol_error(self, proto: MTAProtocol, error: str, line: bytes) -> None: ...
    def message_stored(self, proto: MTAProtocol, mail_from: str, rcpts: list[str], size: int,
                       message_id: str | None, kind: str, ack: str) -> None: ...
    def ack_unread(self, proto: MTAProtocol, rcpts: list[str]) -> None: ...
    def rcpt_corr(self, address: str) -> str | None: ...
    def sender_corr(self, address: str) -> str | None: ...
    def ehlo_reply(self, *, tls_active: bool) -> str: ...


class MTAProtocol(SMTP):
    """The server side of one connection. Created by FakeMTA for each accepted TCP connection."""

    def __init__(self, mta: SessionHost, conn: int) -> None:
        auth = mta.spec.auth
        if FAST_INIT:
            fast_init(self, data_size_limit=mta.spec.data_size_limit, hostname=mta.hostname,
                      tls_context=mta.tls_context, timeout_s=mta.spec.timeout_s, authenticator=mta.authenticate,
                      mechanisms=auth.mechanisms if auth else [])
        else:
            super().__init__(
                NO_HOOKS,
                data_size_limit=mta.spec.data_size_limit,
                hostname=mta.hostname,
                tls_context=mta.tls_context,
                timeout=mta.spec.timeout_s,
                auth_require_tls=False,  # a fake on loopback: AUTH over plain text is the common test setup
                authenticator=mta.authenticate if auth else None,
                auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if not auth or m not in auth.mechanisms],
            )
        self.mta = mta
        self.conn = conn
        self.ip = ""
        self.txn = 0
        self.verb = "CONNECT"
        self.decider = "default"
        self.corr: str | None = None
        self.held_s = 0.0  # a tarpit delay kept back until the message is stored (see _end_of_data)
        self.rcpt: str | None = None  # the recipient of the current RCPT command
        self.sender: str | None = None  # the address of the current MAIL command, accepted or not
        self.errors = 0
        self.closing = False
        self.close_by: str | None = None
        self.close_reason: str | None = None
        self.in_data = False
        self.hanging: str | None = None
        self.greeting_refused = False
        self._lost = False
        self._refused_at_accept = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_ADDR.match(arg)
        if m is not None:
            return m.group(1), arg[m.end():]
        return super()._getaddr(arg)

    # --- connection lifecycle -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None  # STARTTLS calls this again with the TLS transport
        if first and not self.mta.listening:
            # accepted from the backlog in the same turn the listener closed (go_dark refuse): to the client this
            # is the reset a connection still queued on a closed listening socket gets, so no session starts
            self._refused_at_accept = True
            cast(asyncio.Transport, transport).abort()
            return
        if first:
            peer = transport.get_extra_info("peername")
            self.ip = peer[0] if isinstance(peer, tuple) else str(peer or "")
            self.mta.connection_opened(self, peer)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused_at_accept:
            return
        if not self._lost:
            self._lost = True
            if self.close_by is None:
                where = " during DATA" if self.in_data else f" after {self.verb}"
                if self.hanging:
                    where = f" while the server hung ({self.hanging})"
                why = f"connection lost: {error}" if error else "client closed the connection"
                self.close_by, self.close_reason = "client", why + where
            self.mta.connection_closed(self, self.close_by, self.close_reason or "")
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        self.mta.protocol_error(self, f"idle timeout after {self.mta.spec.timeout_s:g} s", b"")
        self.close("server", f"idle timeout ({self.mta.spec.timeout_s:g} s, RFC 5321 §4.5.3.2.7)")

    def close(self, by: str, reason: str) -> None:
        if self.close_by is None:
            self.close_by, self.close_reason = by, reason
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # --- replies --------------------------------------------------------------------------------
    async def push(self, status: str | bytes | None) -> None:
        """Record the reply, then write it (the event reaches the OS before the client sees the reply)."""
        if status is None:  # a hook that already closed or hung the connection
            return
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        code, enhanced, body = parse_status(text)
        closes = code == 421  # RFC 5321 §3.8: after a 421 the server closes the connection
        self.mta.reply_sent(self, code, enhanced, body, closes)
        if self.transport is None or self.transport.is_closing():
            return
        self._writer.write(text.encode("utf-8", "surrogateescape") + b"\r\n")
        if closes:
            self.close("server", f"{code} {enhanced or ''}".rstrip() + " reply (RFC 5321 §3.8)")
            return
        await self._writer.drain()

    def fields(self) -> dict[str, str]:
        rcpt = self.rcpt or (self.envelope.rcpt_tos[0] if self.envelope and self.envelope.rcpt_tos else "")
        return {"rcpt": rcpt, "domain": rcpt.rpartition("@")[2], "ip": self.ip, "verb": self.verb,
                "sender": (self.envelope.mail_from if self.envelope else None) or ""}

    async def decide(self, verb: Verb, *, hold: bool = False) -> Decision | None:
        """Ask the behaviours watching `verb`; sleeps any tarpit delay (with `hold`, keeps it for `held()` to
        sleep later); notes who decided."""
        self.held_s = 0.0
        watchers = self.mta.watchers[verb]
        if not watchers:
            return None
        env = self.envelope
        ctx = Context(verb, self.mta.clock.now(), self.ip, self.conn, env.mail_from if env else None, self.rcpt,
                      env.rcpt_tos if env else ())
        decision, delay = evaluate(watchers, ctx, self.mta.rng)
        if hold:
            self.held_s = delay
        elif delay > 0:
            await asyncio.sleep(delay)  # the tarpit itself, not a wait for a condition
        if decision is not None:
            self.decider = decision.behavior
        return decision

    async def held(self) -> None:
        """The tarpit delay `decide(..., hold=True)` kept back."""
        delay, self.held_s = self.held_s, 0.0
        if delay > 0:
            await asyncio.sleep(delay)  # the tarpit itself, not a wait for a condition

    async def act(self, decision: Decision | None) -> bool:
        """Carry out a decision that is not a plain reply. True when the dialogue is over (hang/drop)."""
        if decision is None:
            return False
        if decision.action is Action.HANG:
            self.hanging = f"{decision.behavior} at {self.verb}"
            await asyncio.get_running_loop().create_future()  # never answers; ends when the connection does
            return True
        if decision.action is Action.DROP:
            self.close("server", f"{decision.behavior}: dropped the connection at {self.verb}")
            return True
        return False

    # --- the command loop -----------------------------------------------------------------------
    async def _handle_client(self) -> None:
        try:
            await self._greet()
            while not self.closing and self.transport is not None:
                line = await self._read_command()
                if line is None:
                    continue
                await self._dispatch(line)
        except asyncio.CancelledError:
            self._writer.close()
            raise
        except (ConnectionError, asyncio.IncompleteReadError):
            self._writer.close()
        except Exception as exc:  # a bug must cost one connection, never the server
            self.mta.protocol_error(self, f"internal error: {type(exc).__name__}: {exc}", b"")
            self.close("server", f"internal error: {type(exc).__name__}")

    async def _greet(self) -> None:
        decision = await self.decide(Verb.CONNECT)
        if await self.act(decision):
            return
        if decision is not None and decision.reply is not None:
            if decision.reply.code >= 500:
                self.greeting_refused = True  # RFC 5321 §3.1: a 554 greeting, then only QUIT is served
            await self.push(decision.reply.wire(self.fields()))
            return
        await self.push(self.mta.banner)

    async def _read_command(self) -> bytes | None:
        try:
            line: bytes = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            head = await self._reader.read(error.consumed)
            while True:  # discard the rest of the over-long line, then answer it
                try:
                    await self._reader.readuntil()
                    break
                except asyncio.LimitOverrunError as e:
                    await self._reader.read(e.consumed)
            await self._protocol_error(head, "command line too long", "500 5.5.2 Error: command line too long")
            return None
        return line.rstrip(b"\r\n")

    async def _protocol_error(self, line: bytes, error: str, reply: str) -> None:
        self.verb, self.decider, self.corr, self.rcpt, self.sender = "UNKNOWN", "default", None, None, None
        self.mta.protocol_error(self, error, line)
        self.errors += 1
        if self.errors >= HARD_ERROR_LIMIT:
            await self.push(TOO_MANY_ERRORS.wire())
        else:
            await self.push(reply)

    async def _dispatch(self, line: bytes) -> None:
        if not line:
            await self._protocol_error(line, "empty command line", "500 5.5.2 Error: bad syntax")
            return
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.upper().decode("ascii")
            arg = arg_bytes.strip().decode("ascii") if arg_bytes else None
        except UnicodeDecodeError:
            await self._protocol_error(line, "non-ASCII command line (SMTPUTF8 not offered)",
                                       "500 5.5.2 Error: bad syntax")
            return
        if len(line) + 2 > COMMAND_LIMIT and command != "AUTH":
            await self._protocol_error(line, "command line too long", "500 5.5.2 Error: command line too long")
            return
        method = self._smtp_methods.get(command) if command in KNOWN_VERBS else None
        if method is None:
            await self._protocol_error(line, f"unknown command {escape_line(command_bytes, 20)!r}",
                                       f'500 5.5.2 Error: command "{command[:20]}" not recognized')
            return
        self.verb, self.decider, self.corr, self.rcpt, self.sender = command, "default", None, None, None
        if self.greeting_refused and command != "QUIT":
            await self.push(BAD_SEQUENCE.wire())
            return
        if not self._tls_handshake_okay and command != "QUIT":
            await self.push("554 5.7.0 Command refused due to lack of security")
            return
        if command == "MAIL":
            self.txn += 1
        self._reset_timeout()
        await method(arg)

    # --- commands -------------------------------------------------------------------------------
    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "MAIL":
            return await self._on_mail(args[0], args[1])
        if command == "RCPT":
            return await self._on_rcpt(args[0], args[1])
        if command == "HELO":
            decision = await self.decide(Verb.EHLO)
            if await self.act(decision):
                return None
            if decision is not None and decision.reply is not None and not decision.reply.is_positive:
                return decision.reply.wire(self.fields())
            return MISSING
        if command == "AUTH":
            decision = await self.decide(Verb.AUTH)
            if decision is not None and decision.reply is not None:
                return decision.reply.wire(self.fields())
            return MISSING
        if command == "QUIT":
            self.close_by, self.close_reason = "client", "QUIT"
        return MISSING

    def _refusal(self, decision: Decision | None) -> str | None:
        if decision is None or decision.reply is None:
            return None
        return decision.reply.wire(self.fields())

    async def _on_mail(self, address: str, options: list[str]) -> Any:
        auth = self.mta.spec.auth
        if auth is not None and auth.required and not self.session.authenticated:
            return AUTH_REQUIRED.wire()
        self.corr = self.mta.sender_corr(address)
        self.sender = address
        self.envelope.mail_from = address  # visible to behaviours; undone below when refused
        decision = await self.decide(Verb.MAIL)
        self.envelope.mail_from = None
        if await self.act(decision):
            return None
        status = self._refusal(decision)
        if status is None or status[0] == "2":
            self.envelope.mail_from = address
            self.envelope.mail_options.extend(options)
            return "250 OK" if status is None else status
        return status

    async def _on_rcpt(self, address: str, options: list[str]) -> Any:
        self.rcpt = address
        self.corr = self.mta.rcpt_corr(address)
        decision = await self.decide(Verb.RCPT)
        if await self.act(decision):
            return None
        status = self._refusal(decision)
        if status is None or status[0] == "2":
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(options)
            return "250 OK" if status is None else status
        return status

    async def smtp_EHLO(self, hostname: str | None) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        decision = await self.decide(Verb.EHLO)
        if await self.act(decision):
            return
        if decision is not None and decision.reply is not None and not decision.reply.is_positive:
            await self.push(decision.reply.wire(self.fields()))
            return
        self.session.host_name = hostname
        await self.push(self.mta.ehlo_reply(tls_active=self._tls_protocol is not None))

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        first = self.envelope.rcpt_tos[0]
        self.corr = self.mta.rcpt_corr(first)
        decision = await self.decide(Verb.DATA)
        drop = decision is not None and decision.action is Action.DROP
        if not drop and await self.act(decision):
            return
        status = self._refusal(decision)
        if status is not None and status[0] != "3":  # refused at DATA (SES's 454): the transaction ends
            await self.push(status)
            self._set_post_data_state()
            return
        await self.push(status or START_DATA.wire())
        self.in_data = True
        if drop:
            assert decision is not None
            await self._reader.read(1)  # let the client start sending, then cut it off
            self.close("server", f"{decision.behavior}: closed the connection during DATA")
            return
        content = await self._read_data()
        self.in_data = False
        if content is None:
            return
        await self._end_of_data(content)

    async def _read_data(self) -> bytes | None:
        """The message (dot-unstuffed, RFC 5321 §4.5.2), or None after answering a size/line error."""
        limit = self.mta.spec.data_size_limit
        lines: list[bytes] = []
        size = 0
        problem: str | None = None
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                problem = problem or "data line too long"
                lines = []
                await self._reader.read(e.consumed)
                continue
            if line == b".\r\n":
                break
            size += len(line)
            if problem is None and size > limit:
                problem = f"message larger than data_size_limit ({limit} bytes)"
                lines = []
            if problem is None:
                lines.append(line[1:] if line[:1] == b"." else line)
        self.verb = "DOT"
        if problem is not None:
            self.mta.protocol_error(self, problem, b"")
            reply = ("552 5.3.4 Error: message exceeds fixed maximum message size" if "larger" in problem
                     else "500 5.5.2 Error: line too long (RFC 5321 §4.5.3.1.6)")
            await self.push(reply)
            self._set_post_data_state()
            return None
        return b"".join(lines)

    async def _end_of_data(self, content: bytes) -> None:
        env = self.envelope
        self.verb, self.decider = "DOT", "default"
        self.corr = self.mta.rcpt_corr(env.rcpt_tos[0])
        # A tarpit here slows the reply, not the storing: a real MTA commits the message on the final dot and
        # only then sends its 250, so a client that gives up (or dies) while it waits leaves a stored message
        # behind and sends it again — RFC 1047's duplicate.
        decision = await self.decide(Verb.DOT, hold=True)
        if decision is not None and decision.action in (Action.HANG, Action.DROP):
            await self.held()
            await self.act(decision)
            return
        status = self._refusal(decision)
        action = decision.action if decision is not None else Action.REPLY
        if action is Action.REPLY and status is not None and status[0] != "2":
            await self.held()
            await self.push(status)
            self._set_post_data_state()  # refused after the data: nothing stored
            return
        if self.closing:  # the server closed this connection (go_dark refuse, stop) before the final dot was
            return        # processed: a dropped connection commits nothing, so nothing is stored
        message_id = message_id_of(content)
        kind = "discarded" if action is Action.BLACKHOLE else "accepted"
        ack = "lost" if action is Action.LOSE_ACK else "sent"
        self.mta.message_stored(self, env.mail_from or "", list(env.rcpt_tos), len(content), message_id, kind, ack)
        try:
            await self.held()
        except asyncio.CancelledError:  # the connection ended inside the tarpit: the 250 will never be sent
            if kind == "accepted" and ack == "sent":
                self.mta.ack_unread(self, list(env.rcpt_tos))
            raise
        if action is Action.LOSE_ACK:
            self._set_post_data_state()
            self.close("server", f"{self.decider}: message stored, connection closed before the 250")
            return
        await self.push(status or OK.wire())
        self._set_post_data_state()
