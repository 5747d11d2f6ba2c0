"""WebhookDispatcher: a fake vendor's delivery events POSTed to the SUT, late, lossy, duplicated, retried.

On each acceptance the dispatcher draws (from its own seeded RNG) the message's fate (delivered, bounce,
dropped; maybe deferred first), each event's lag, loss and duplication, and schedules the POSTs on the event
loop (lags and retry intervals times `time_scale`). Every POST is recorded before it is made and its answer after:
``mta.webhook.sent``, ``mta.webhook.answered`` / ``mta.webhook.failed`` (timeout, connection error),
``mta.webhook.dropped`` (loss, retries_exhausted, refused, not_retried, paused, stopped), ``mta.webhook.held``
(a `webhook_pause` in `hold` mode; sent when it ends). Payload and signature timestamps are wall time (the SUT
checks them against its own clock); everything else follows the vendor's Clock.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from maildrill.fake_mta.recording import Recorder
from maildrill.fake_mta.vendors.webhooks.format import Format, Notice, now_epoch
from maildrill.fake_mta.webhook_spec import WebhookSpec


def formats() -> dict[str, type[Format]]:
    from maildrill.fake_mta.vendors.webhooks import mailgun, postmark, resend, sendgrid, ses

    return {f.api: f for f in (sendgrid.SendGridEvents, ses.SESEvents, postmark.PostmarkEvents,
                               mailgun.MailgunEvents, resend.ResendEvents)}


class WebhookDispatcher:
    """Sends one vendor's webhooks. `base_url`: the SUT's base URL a path `url` is resolved against (a full URL
    in the spec needs none; a path without one raises ValueError at `start`). `vendor_url`: the vendor's own
    base URL (SNS's SigningCertURL / SubscribeURL point there)."""

    def __init__(self, vendor_name: str, api: str, spec: WebhookSpec, *, recorder: Recorder, clock: Any,
                 seed: int = 0, base_url: str | None = None,
                 vendor_url: Callable[[], str] | None = None) -> None:
        self.vendor_name = vendor_name
        self.api = api
        self.spec = spec
        self.recorder = recorder
        self.clock = clock
        self.base_url = base_url
        self.seed = seed
        self.rng = random.Random(f"{seed}:{vendor_name}:webhooks")
        cls = formats()[api]
        ids = random.Random(f"{seed}:{vendor_name}:webhook-ids")
        if api == "ses":
            self.format: Format = cls(spec, ids, vendor_name, vendor_url)  # type: ignore[call-arg]
        else:
            self.format = cls(spec, ids, vendor_name)
        self.scale = spec.time_scale
        self.pauses: list[tuple[str, re.Pattern[str] | None]] = []
        self.held: list[tuple[Notice, int]] = []
        self._seq = 0
        self._pending: dict[tuple[int, int], Notice] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._preamble: asyncio.Task[None] | None = None
        self._suffix = 0
        self.url = ""

    @property
    def verification_key(self) -> str | None:
        return self.format.verification_key

    def shared(self) -> dict[str, str]:
        """The signing material sibling processes must use too (`Format.shared`)."""
        return self.format.shared()

    def adopt(self, shared: dict[str, str]) -> None:
        self.format.adopt(shared)

    def resolve_url(self) -> str:
        url = self.spec.url
        if url.startswith("/"):
            if not self.base_url:
                raise ValueError(f"vendor {self.vendor_name!r}: webhooks.url {url!r} is a path on the system under "
                                 "test, and no SUT base URL is known here; give a full http(s):// URL when the "
                                 "vendor runs on its own")
            return self.base_url.rstrip("/") + url
        return url

    async def start(self) -> None:
        self.url = self.resolve_url()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.spec.timeout_s),
                                              auto_decompress=False)

    async def stop(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._preamble is not None:
            self._preamble.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for n in list(self._pending.values()):
            self._dropped(n, "stopped", attempt=0)
        self._pending.clear()
        self.held.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- pause -----------------------------------------------------------------------------------
    def set_pauses(self, pauses: list[tuple[str, str | None]]) -> None:
        """The webhook_pause behaviours now in force, as (mode, match_rcpt). Ending a hold releases what it held."""
        self.pauses = [(mode, re.compile(rx) if rx else None) for mode, rx in pauses]
        self._release()

    def _release(self) -> None:
        if self.held:
            still: list[tuple[Notice, int]] = []
            release: list[tuple[Notice, int]] = []
            for n, attempt in self.held:
                (still if self._paused(n) else release).append((n, attempt))
            self.held = still
            for n, attempt in release:
                self._spawn(n, attempt)

    def _paused(self, n: Notice) -> str | None:
        if self.spec.confirm == "visit" and not getattr(self.format, "confirmed", True):
            return "hold"  # SNS delivers nothing to a subscription still pending confirmation
        for mode, rx in self.pauses:
            if rx is None or rx.search(n.rcpt):
                return mode
        return None

    def reseed(self) -> None:
        """Draw the messages' fates from the start of the seeded sequence again (the vendor's reset)."""
        self.rng = random.Random(f"{self.seed}:{self.vendor_name}:webhooks")

    # --- scheduling -------------------------------------------------------------------------------
    def accepted(self, message_id: str, rcpt: str, corr: str | None, sender: str | None, index: int = 0) -> None:
        """A message was accepted for `rcpt`: draw its fate and schedule its webhooks."""
        spec, rng = self.spec, self.rng
        out = spec.outcomes
        if (out.bounce_match_rcpt and re.search(out.bounce_match_rcpt, rcpt)) or rng.random() < out.bounce:
            final = "bounce"
        elif rng.random() < out.dropped:
            final = "dropped"
        else:
            final = "delivered"
        seq = ["processed"]
        if final == "delivered" and rng.random() < out.deferred:
            seq.append("deferred")
        seq.append(final)
        if final == "delivered" and out.bounce_after_delivery and rng.random() < out.bounce_after_delivery:
            seq.append("bounce")
        seq = [e for e in seq if e in spec.events]
        lags = [spec.lag_s.sample(rng) for _ in seq]
        if not spec.reorder:
            lags.sort()
        now_t = self.clock.now()
        wall = now_epoch()
        self._suffix += 1
        for event, lag in zip(seq, lags, strict=True):
            self._seq += 1
            base = dict(webhook=self._seq, event=event, message_id=message_id, rcpt=rcpt, sender=sender, corr=corr,
                        accepted_t=now_t, event_id=self.format.event_id(event),
                        bounce_type=out.bounce_type if event == "bounce" else "permanent")
            extra = {"accepted_wall": wall, "suffix": f"{index:04d}-{self._suffix}", "sns_published_wall": wall + lag}
            if rng.random() < spec.loss:
                n = Notice(copy=0, occurred=wall + lag, extra=extra, **base)
                # recorded from the loop, after the acceptance it is about
                asyncio.get_running_loop().call_soon(functools.partial(self._dropped, n, "loss", attempt=0, lag_s=lag))
                continue
            self._schedule(Notice(copy=0, occurred=wall + lag, extra=extra, **base), 1, lag)
            if rng.random() < spec.duplicate:
                extra2 = {**extra, "sns_published_wall": wall + lag}
                later = lag + spec.lag_s.sample(rng)
                self._schedule(Notice(copy=1, occurred=wall + lag, extra=extra2, **base), 1, later)

    def _schedule(self, n: Notice, attempt: int, delay_s: float) -> None:
        self._pending[(n.webhook, n.copy)] = n
        loop = asyncio.get_running_loop()
        delay = max(0.0, delay_s * self.scale)  # call_later(0): after the acceptance's own events
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self._due(n, attempt)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _ensure_preamble(self) -> asyncio.Task[None]:
        """SNS's SubscriptionConfirmation goes out when the first notification is due (the SUT is up by then)."""
        if self._preamble is None:
            self._preamble = asyncio.get_running_loop().create_task(self._send_preamble())
        return self._preamble

    def _due(self, n: Notice, attempt: int) -> None:
        self._ensure_preamble()
        mode = self._paused(n)
        if mode == "drop":
            self._dropped(n, "paused", attempt=attempt - 1)
            return
        if mode == "hold":
            self.held.append((n, attempt))
            self.recorder.record("mta.webhook.held", n.corr, **self._data(n, attempt))
            return
        self._spawn(n, attempt)

    def _spawn(self, n: Notice, attempt: int) -> None:
        task = asyncio.get_running_loop().create_task(self._attempt(n, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one POST ---------------------------------------------------------------------------------
    def _data(self, n: Notice, attempt: int) -> dict[str, Any]:
        return {"webhook": n.webhook, "copy": n.copy, "attempt": attempt, "event": n.event,
                "message_id": n.message_id, "rcpt": n.rcpt, "event_id": n.event_id, "url": self.url,
                "api": self.api}

    async def _post(self, label: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        assert self._session is not None
        hdrs = {"Content-Type": self.format.content_type, **headers, **self.spec.headers}
        try:
            async with self._session.post(self.url, data=body, headers=hdrs, allow_redirects=False) as resp:
                await resp.read()
                return resp.status, ""
        except TimeoutError:
            return None, "timeout"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200]

    async def _send_preamble(self) -> None:
        for label, body, headers in self.format.preamble():
            t0 = self.clock.now()
            self.recorder.record("mta.webhook.sent", None, attempt=1, event=label, url=self.url, api=self.api)
            status, error = await self._post(label, body, headers)
            ms = round((self.clock.now() - t0) * 1000, 3)
            if status is None:
                self.recorder.record("mta.webhook.failed", None, attempt=1, event=label, error=error, latency_ms=ms)
            else:
                self.recorder.record("mta.webhook.answered", None, attempt=1, event=label, status=status,
                                     latency_ms=ms)

    async def _attempt(self, n: Notice, attempt: int) -> None:
        await asyncio.shield(self._ensure_preamble())
        body, headers = self.format.render(n, attempt)
        data = self._data(n, attempt)
        t0 = self.clock.now()
        self.recorder.record("mta.webhook.sent", n.corr, **data, lag_s=round((t0 - n.accepted_t) / self.scale, 6))
        status, error = await self._post(n.event, body, headers)
        ms = round((self.clock.now() - t0) * 1000, 3)
        if status is not None:
            self.recorder.record("mta.webhook.answered", n.corr, **data, status=status, latency_ms=ms)
            if 200 <= status < 300:
                self._pending.pop((n.webhook, n.copy), None)
                return
        else:
            self.recorder.record("mta.webhook.failed", n.corr, **data, error=error, latency_ms=ms)
        nxt = self.format.next_delay_s(n, attempt, status)
        if isinstance(nxt, str):
            self._dropped(n, nxt, attempt=attempt, status=status)
            return
        self._schedule(n, attempt + 1, nxt)

    def _dropped(self, n: Notice, reason: str, *, attempt: int, **more: Any) -> None:
        self._pending.pop((n.webhook, n.copy), None)
        data = self._data(n, attempt)
        data.update(reason=reason, **more)
        self.recorder.record("mta.webhook.dropped", n.corr, **data)

    # --- what the vendor serves for its webhooks (SNS certificate and subscription links) ------------------------
    def serve(self, method: str, path: str, query: dict[str, str]) -> tuple[int, str, bytes] | None:
        if self.api != "ses" or method != "GET":
            return None
        from maildrill.fake_mta.vendors.webhooks import ses

        fmt = self.format
        assert isinstance(fmt, ses.SESEvents)
        if path == ses.CERT_PATH:
            return 200, "application/x-pem-file", fmt.cert_pem
        if path == ses.CONFIRM_PATH:
            if query.get("Token") != fmt.token:
                return 400, "text/xml", b"<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>"
            first = not fmt.confirmed
            fmt.confirmed = True
            if first:
                self.recorder.record("mta.webhook.subscription_confirmed", None, topic_arn=fmt.topic_arn)
                self._release()
            return 200, "text/xml", (f"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
                                     f"{fmt.subscription_arn}</SubscriptionArn></ConfirmSubscriptionResult>"
                                     f"</ConfirmSubscriptionResponse>").encode()
        if path == ses.UNSUBSCRIBE_PATH:
            return 200, "text/xml", b"<UnsubscribeResponse/>"
        return None
