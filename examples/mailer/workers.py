"""Delivery workers: claim the most urgent due message, pick a vendor, attempt once, and apply the retry policy."""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections import Counter

from maildrill.examples.mailer.config import Endpoint, Settings
from maildrill.examples.mailer.delivery import attempt, vendor_accepted
from maildrill.examples.mailer.policy import Attempt, Outcome, PoolBackoff, TokenBucket, message_rng, retry_delay_s
from maildrill.examples.mailer.queue import Message, MessageQueue, State
from maildrill.examples.mailer.transports.api import IDEMPOTENT_APIS, ApiAttempt, ApiClients, SdkOptions
from maildrill.examples.mailer.transports.webhooks import normal_id
from maildrill.harness.clock import clock_from_env
from maildrill.harness.store import EventWriter

from maildrill.vocabulary import EventKind

# How long (unscaled seconds) a primary that refused a connection is treated as dark before it is probed again.
DARK_PROBE_S = 5.0
# When a pool pause ends, released messages are spread over this window (unscaled) so they don't restart in a burst.
PAUSE_SPREAD_S = 0.5


class Dispatcher:
    """Shared state of the worker pool (vendor pauses, rate limit, counters) and the per-message decision."""

    def __init__(self, settings: Settings, queue: MessageQueue) -> None:
        self.settings = settings
        self.queue = queue
        # Separate streams, so that what one draw gets does not depend on how the worker threads interleave:
        # the pool's pauses draw in the order of the 421s, and each message's retry draws from its own
        # generator keyed on (seed, message id, attempt).
        self.seed = settings.seed
        self.pool = PoolBackoff(settings.retry, settings.jitter, scale=settings.time_scale,
                                rng=random.Random(f"{self.seed}:pool"))
        self.bucket = TokenBucket(settings.rate, scale=settings.time_scale) if settings.rate else None
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._primary_dark_until = 0.0
        self.api: ApiClients | None = None
        self.api_endpoints = {ep.name: ep for ep in (settings.api_primary, settings.api_backup) if ep is not None}
        # webhooks: the vendor's message id of each API send, the vendor that owns each message, its last event
        self._hooks_lock = threading.Lock()
        self.by_vendor_id: dict[tuple[str, str], int] = {}
        self.owner: dict[int, str] = {}
        self.webhook_state: dict[int, str] = {}
        self.awaiting: dict[int, tuple[float, Message]] = {}  # primary sends waiting for a webhook (silence failover)
        self.rcpt: dict[int, str] = {}  # each API-sent message's recipient (its local part is the drill's corr id)
        # the webhook decisions, as drill events on the run's clock (under a drill: MAILDRILL_RUN_DIR, MAILDRILL_T0)
        self.events: EventWriter | None = None
        if settings.events_path is not None and self.api_endpoints:  # only the API path has webhooks
            self.events = EventWriter(settings.events_path, "sut/mailer", clock_from_env())
        if self.api_endpoints:
            self.api = ApiClients(
                SdkOptions(settings.api_timeout_s, settings.sdk_retries, settings.api_idempotency_key)
            )

    def count(self, name: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[name] += n

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def _delay_s(self, message: Message, attempts: int) -> float | None:
        rng = message_rng(self.seed, "retry", message.id, attempts)
        delay = retry_delay_s(self.settings.retry, self.settings.jitter, attempts, rng)
        return None if delay is None else delay * self.settings.time_scale

    def vendor_for(self, message: Message, now: float) -> Endpoint:
        s = self.settings
        if s.backup is None:
            return s.primary
        if (
            message.vendor == s.backup.name
            or message.primary_failures >= s.failover_after
            or self._primary_dark_until > now
        ):
            return s.backup
        return s.primary

    def run_worker(self) -> None:
        """One worker thread's loop; returns soon after `stop` is set (after finishing its attempt)."""
        if self.api is not None:
            self.api.warm(list(self.api_endpoints.values()))
        while not self.stop.is_set():
            message: Message | None = None
            try:
                message = self.queue.claim(now=time.time(), lease_s=self.settings.lease_s)
                if message is None:
                    due = self.queue.next_due()
                    timeout = 0.5 if due is None else min(0.5, max(0.005, due - time.time()))
                    with self.wake:
                        self.wake.wait(timeout)
                    continue
                self.handle(message)
            except Exception as exc:  # a bug or a queue outage must not kill the worker
                print(f"mailer: worker error ({message and message.id}): {exc!r}", file=sys.stderr, flush=True)
                self.count("worker_errors")
                if message is not None:
                    # Give the claim back (this process's leases are never reclaimed by its own workers).
                    with contextlib.suppress(Exception):
                        self.queue.defer(
                            message.id,
                            next_at=time.time() + self.settings.scaled(1.0),
                            vendor=None,
                            reply="",
                            counted=False,
                            unknown_vendor=message.unknown_vendor,
                        )
                self.stop.wait(0.2)  # back off before the next claim, so a broken queue isn't hammered

    def handle(self, message: Message) -> None:
        s, now = self.settings, time.time()
        vendor = self.vendor_for(message, now)
        if message.unknown_vendor and s.idempotency and s.control_url:
            accepted = vendor_accepted(s.control_url, message.unknown_vendor, message.message_id)
            self.count(f"status_checks_{'unreachable' if accepted is None else str(accepted).lower()}")
            if accepted:
                # The lost-ack attempt did deliver: one delivery record per message, so don't send again.
                self.queue.finish(
                    message.id,
                    State.SENT,
                    vendor=message.unknown_vendor,
                    reply="accepted (vendor status API)",
                    counted=False,
                )
                self.count("sent")
                self._log(message, vendor.name, "deduplicated", 0, "vendor status API says accepted")
                return
        if s.pool_backoff or s.honour_retry_after:
            paused = self.pool.paused_until(vendor.name)
            if paused:
                self.queue.defer(
                    message.id,
                    next_at=paused + message_rng(self.seed, "spread", message.id, message.attempts).uniform(
                        0, PAUSE_SPREAD_S * s.time_scale),
                    vendor=None,
                    reply="",
                    counted=False,
                    unknown_vendor=message.unknown_vendor,
                )
                return
        if self.bucket is not None:
            while (wait := self.bucket.take()) > 0:
                if self.stop.wait(wait):
                    self.queue.defer(
                        message.id,
                        next_at=time.time(),
                        vendor=None,
                        reply="",
                        counted=False,
                        unknown_vendor=message.unknown_vendor,
                    )
                    return
        if s.idempotency and s.control_url:
            # Until this attempt settles the message is in doubt at this vendor: if the process dies mid-attempt
            # (its 250 perhaps already sent), whoever reclaims the message asks the vendor before sending again.
            self.queue.in_doubt(message.id, vendor.name)
        api = self.api_endpoints.get(vendor.name)
        if api is not None and self.api is not None:
            result = self.api.send(api, message)
        else:
            result = attempt(vendor, message, timeout_s=s.smtp_timeout_s)
        self.count(f"attempts_{result.outcome.value}")
        self._log(message, vendor.name, result.outcome.value, result.code, result.text)
        self.settle(message, vendor, result)

    def settle(self, message: Message, vendor: Endpoint, result: Attempt) -> None:
        s, now = self.settings, time.time()
        attempts = message.attempts + 1
        reply = f"{result.code} {result.text}".strip()[:300]
        if result.outcome is Outcome.SENT:
            self.pool.succeeded(vendor.name)
            api = self.api_endpoints.get(vendor.name)
            if api is not None and isinstance(result, ApiAttempt) and result.vendor_id:
                with self._hooks_lock:
                    self.by_vendor_id[(vendor.name, normal_id(api.api, result.vendor_id))] = message.id
                    self.owner[message.id] = vendor.name
                    self.rcpt[message.id] = message.email
                    if s.failover_on_silence_s > 0 and s.api_backup is not None and vendor.name == s.primary.name:
                        self.awaiting[message.id] = (now + s.failover_on_silence_s, message)
            self.queue.finish(message.id, State.SENT, vendor=vendor.name, reply=reply)
            self.count("sent")
            return
        if result.outcome is Outcome.PERMFAIL and not s.retry_5xx:
            self.queue.finish(message.id, State.FAILED, vendor=vendor.name, reply=reply)
            self.count("failed")
            return
        api = self.api_endpoints.get(vendor.name)
        keyed = api is not None and api.api in IDEMPOTENT_APIS and s.api_idempotency_key
        if result.outcome is Outcome.UNKNOWN and api is not None and s.hold_unknown and not keyed:
            # The request went out and the response was lost: the vendor may well have it. Without an
            # idempotency key a re-send risks a duplicate, so the message is recorded as sent, unconfirmed.
            self._log(message, vendor.name, "held", 0, "response lost; not re-sent (no idempotency key)")
            self.count("held_unknown")
            self.queue.finish(message.id, State.SENT, vendor=vendor.name, reply="unconfirmed: " + reply)
            return
        retry_after = result.retry_after_s if isinstance(result, ApiAttempt) else None
        if result.code == 429 and s.honour_retry_after and retry_after is not None:
            until = now + retry_after
            self.pool.pause(vendor.name, until)
            self.count("paused_retry_after")
            self._log(message, vendor.name, "paused", 429, f"honouring the vendor's reset: {retry_after:.2f} s")
            self.queue.defer(
                message.id,
                next_at=until + self._uniform(0, PAUSE_SPREAD_S * s.time_scale),
                vendor=vendor.name,
                reply=reply,
                unknown_vendor=message.unknown_vendor,
            )
            self.count("deferred")
            return
        if result.code in (421, 429) and s.pool_backoff:
            self.pool.throttled(vendor.name)
        on_primary = vendor.name == s.primary.name
        dark = result.outcome in (Outcome.REFUSED, Outcome.TIMEOUT)
        if dark and on_primary and s.backup is not None:
            self._primary_dark_until = now + DARK_PROBE_S * s.time_scale
        delay = self._delay_s(message, attempts)
        if delay is None or attempts >= s.max_attempts:
            self.queue.finish(message.id, State.FAILED, vendor=vendor.name, reply=reply)
            self.count("failed")
            return
        if dark and on_primary and s.backup is not None:
            delay = 0.0  # a dark primary: go to the backup now rather than after a back-off
        self.queue.defer(
            message.id,
            next_at=now + delay,
            vendor=vendor.name,
            reply=reply,
            primary_failures=message.primary_failures + 1 if on_primary else None,
            unknown_vendor=vendor.name if result.outcome is Outcome.UNKNOWN else message.unknown_vendor,
        )
        self.count("deferred")

    def watch_silence(self) -> None:
        """Failover on webhook silence: a primary send with no webhook within the window goes out via the backup."""
        s = self.settings
        assert s.api_backup is not None and self.api is not None
        while not self.stop.wait(min(0.1, s.failover_on_silence_s / 4)):
            now = time.time()
            with self._hooks_lock:
                due = [(i, m) for i, (t, m) in self.awaiting.items() if t <= now and i not in self.webhook_state]
                for i in [i for i in self.awaiting if i in self.webhook_state] + [i for i, _ in due]:
                    del self.awaiting[i]
            for msg_id, message in due:
                self._log(message, s.api_backup.name, "silence", 0, f"no webhook from {s.primary.name}: failing over")
                result = self.api.send(s.api_backup, message)
                self.count("failovers_on_silence")
                self._log(message, s.api_backup.name, result.outcome.value, result.code, result.text)
                if result.outcome is Outcome.SENT:
                    with self._hooks_lock:
                        self.owner[msg_id] = s.api_backup.name
                        if isinstance(result, ApiAttempt) and result.vendor_id:
                            key = (s.api_backup.name, normal_id(s.api_backup.api, result.vendor_id))
                            self.by_vendor_id[key] = msg_id
                    self.queue.finish(msg_id, State.SENT, vendor=s.api_backup.name, reply="sent again: webhook silence")

    def webhook(self, vendor: str, events: list[tuple[str, str]]) -> list[tuple[int | None, str, str]]:
        """Apply one webhook POST's events to the delivery records: [(message, event, applied|late|unknown)]."""
        out: list[tuple[int | None, str, str]] = []
        for vendor_id, event in events:
            # one lock over decide, record, log and apply: whoever sees the record updated also finds its log line
            with self._hooks_lock:
                msg_id = self.by_vendor_id.get((vendor, vendor_id))
                owner = self.owner.get(msg_id) if msg_id is not None else None
                if msg_id is None:
                    verdict = "unknown"
                elif owner != vendor and self.settings.ignore_late_webhooks:
                    verdict = "late"  # the message moved to another vendor: this one no longer speaks for it
                else:
                    verdict = "applied" if owner == vendor else f"applied (owner {owner})"
                applied = verdict.startswith("applied")
                rcpt = self.rcpt.get(msg_id) if msg_id is not None else None
                if self.events is not None:
                    # late: the message's owner is another vendor (it failed over) — applied or ignored, the drill
                    # sees it
                    self.events.record(
                        EventKind.SUT_WEBHOOK_APPLIED if applied else EventKind.SUT_WEBHOOK_IGNORED,
                        rcpt.split("@", 1)[0] if rcpt else None,
                        vendor=vendor, message_id=vendor_id, owner=owner, late=owner is not None and owner != vendor,
                        event=event,
                    )
                self.count(f"webhooks_{verdict.split()[0]}")
                print(
                    f"mailer: webhook vendor={vendor} vendor_id={vendor_id} message={msg_id} event={event} {verdict}",
                    file=sys.stderr,
                    flush=True,
                )
                if applied:
                    assert msg_id is not None
                    self.webhook_state[msg_id] = event
            out.append((msg_id, event, verdict))
        return out

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    def _log(self, message: Message, vendor: str, outcome: str, code: int, text: str) -> None:
        print(
            f"mailer: message={message.id} {message.message_id} kind={message.kind.value} "
            f"attempt={message.attempts + 1}"
            f" vendor={vendor} outcome={outcome} code={code} {text[:120]!r}",
            file=sys.stderr,
            flush=True,
        )
