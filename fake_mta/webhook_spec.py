"""Webhook configuration of a fake vendor: where its delivery events go, how late, how lossy, signed how.

`VendorSpec.webhooks` holds a `WebhookSpec`; `maildrill.fake_mta.vendors.webhooks` sends what it describes.
Event names here are the vendor-neutral vocabulary (processed, deferred, delivered, bounce, dropped); each
vendor's format maps them onto its own (SendGrid ``delivered``, SES ``Delivery``, Resend ``email.delivered``...).
"""

from __future__ import annotations

import base64
import math
import random
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENTS = ("processed", "deferred", "delivered", "bounce", "dropped")
# what each vendor can send, in the neutral vocabulary (Postmark's outbound webhooks know Delivery and Bounce only)
VENDOR_EVENTS: dict[str, tuple[str, ...]] = {
    "sendgrid": EVENTS,
    "ses": EVENTS,
    "postmark": ("delivered", "bounce"),
    "mailgun": EVENTS,
    "resend": EVENTS,
}
WebhookEvent = Literal["processed", "deferred", "delivered", "bounce", "dropped"]
_DEFAULT_EVENTS: tuple[WebhookEvent, ...] = ("delivered", "bounce")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedLag(_Frozen):
    """Every webhook `value_s` seconds after the acceptance."""

    distribution: Literal["fixed"] = "fixed"
    value_s: float = Field(default=0.0, ge=0)

    def sample(self, rng: random.Random) -> float:
        return self.value_s


class UniformLag(_Frozen):
    """Uniform between `min_s` and `max_s`."""

    distribution: Literal["uniform"]
    min_s: float = Field(ge=0)
    max_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _order(self) -> UniformLag:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s:g}) must be >= min_s ({self.min_s:g})")
        return self

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.min_s, self.max_s)


class LognormalLag(_Frozen):
    """Log-normal with median `median_s` and `sigma` the standard deviation of ln(lag): a long right tail."""

    distribution: Literal["lognormal"]
    median_s: float = Field(gt=0)
    sigma: float = Field(default=1.0, ge=0, le=5)

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


LAG_DISTRIBUTIONS = ("fixed", "uniform", "lognormal")
LagSpec = Annotated[FixedLag | UniformLag | LognormalLag, Field(discriminator="distribution")]


class OutcomeSpec(_Frozen):
    """What becomes of an accepted message, drawn once per recipient: probabilities of a bounce, a drop (SendGrid
    `dropped`, SES `Reject`, Mailgun `failed` permanent, Resend `email.failed`) and a deferral before the final
    event; the rest is delivered, and `bounce_after_delivery` of those bounce after the delivery event.
    `bounce_match_rcpt`: recipients matching this regex always bounce."""

    bounce: float = Field(default=0.0, ge=0, le=1)
    bounce_type: Literal["permanent", "transient"] = "permanent"
    bounce_match_rcpt: str | None = None
    dropped: float = Field(default=0.0, ge=0, le=1)
    deferred: float = Field(default=0.0, ge=0, le=1)
    # a delivered message that bounces later anyway (SES documents a Delivery followed by a Bounce; async bounces)
    bounce_after_delivery: float = Field(default=0.0, ge=0, le=1)

    @field_validator("bounce_match_rcpt")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _sum(self) -> OutcomeSpec:
        if self.bounce + self.dropped > 1:
            raise ValueError(f"bounce + dropped = {self.bounce + self.dropped:g} is over 1")
        return self


class WebhookSpec(_Frozen):
    """A vendor's delivery webhooks. `url`: a path on the system under test (``/hooks/sendgrid``, resolved
    against its base URL by the drill) or a full ``http(s)://`` URL (required when the vendor runs standalone).

    `lag_s` is acceptance → first POST of each event; `loss` the probability an event is never sent; `duplicate`
    the probability it is sent twice (the copy with its own lag, same event id); `reorder: false` keeps one
    message's events in the order they happened. Failed POSTs (non-2xx, timeout, connection error) are retried
    on the vendor's own schedule. `time_scale` multiplies lags and retry intervals (0.01: a 24 h schedule in
    about 15 min); `timeout_s` (how long the vendor waits for the SUT's answer) is not scaled.
    `secret`: SendGrid — any string, from which the ECDSA P-256 signing key is derived (unsigned without it);
    Mailgun — the HTTP webhook signing key; Resend — the ``whsec_...`` endpoint secret. Without one, Mailgun and
    Resend use a key derived from the seed (the dispatcher's `verification_key`). SES and Postmark sign nothing
    here; `headers` adds fixed headers to every POST (e.g. Postmark's basic-auth or custom headers).
    `confirm` (SES): whether notifications wait until the SUT visits the SubscriptionConfirmation's SubscribeURL.
    """

    url: str
    enabled: bool = True
    events: list[WebhookEvent] = Field(default_factory=lambda: list(_DEFAULT_EVENTS), min_length=1)
    lag_s: LagSpec = Field(default_factory=lambda: FixedLag(value_s=1.0))
    loss: float = Field(default=0.0, ge=0, le=1)
    duplicate: float = Field(default=0.0, ge=0, le=1)
    reorder: bool = False
    outcomes: OutcomeSpec = Field(default_factory=OutcomeSpec)
    time_scale: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # SES: `answer` — notifications flow whatever the SUT does with the SubscriptionConfirmation; `visit` — as SNS,
    # nothing is delivered until the SUT GETs its SubscribeURL (until then they are held)
    confirm: Literal["answer", "visit"] = "answer"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("/"):
            return v
        if re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            return v
        raise ValueError("must be a path on the system under test (starting with '/') or a full http(s):// URL")

    @field_validator("events")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({e for e in v if v.count(e) > 1})
        if dupes:
            raise ValueError(f"each event at most once; repeated: {dupes}")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k) or any(c in val for c in "\r\n"):
                raise ValueError(f"header {k!r}: a token name and a one-line value are required")
        return v

    def misfits(self, api: str) -> list[str]:
        """What in this spec a vendor of `api` cannot do, as ``"field: why"`` messages."""
        out = []
        unsupported = [e for e in self.events if e not in VENDOR_EVENTS[api]]
        if unsupported:
            out.append(f"events: {api} sends no {unsupported} webhook; it sends {list(VENDOR_EVENTS[api])}")
        if self.confirm == "visit" and api != "ses":
            out.append(f"confirm: only SES (through SNS) has a subscription to confirm; a {api} vendor has none")
        if self.secret is not None:
            if api in ("ses", "postmark"):
                out.append(f"secret: {api} webhooks carry no shared-secret signature here; remove it (Postmark: "
                           "use `headers` for basic auth or a custom header)")
            elif api == "resend" and not _whsec(self.secret):
                out.append("secret: a Resend (Svix) endpoint secret is 'whsec_' followed by base64")
            elif not self.secret:
                out.append("secret: must not be empty")
        return out


def _whsec(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return bool(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except ValueError:
        return False
