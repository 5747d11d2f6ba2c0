"""Stand-in for `maildrill.fake_mta.config.VendorSpec` until the fake vendors land (same fields as agreed):
the scenario side is built and tested against it. Deleted when the real one exists."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from maildrill.fake_mta.config import (
    DEFAULT_CORR_PATTERN,
    NAME_RE,
    AcceptSpec,
    RejectSpec,
    TarpitSpec,
    TempfailSpec,
    ThrottleSpec,
    _BehaviorBase,
    _Frozen,
)
from pydantic import Field, field_validator

VENDOR_APIS = ("sendgrid", "ses", "postmark", "mailgun", "resend")


class VendorGoDarkSpec(_BehaviorBase):
    kind: Literal["go_dark"] = "go_dark"
    mode: Literal["refuse", "hang", "reset", "lose_response", "blackhole"]


VendorBehaviorSpec = Annotated[
    AcceptSpec | ThrottleSpec | RejectSpec | TempfailSpec | VendorGoDarkSpec | TarpitSpec,
    Field(discriminator="kind"),
]


class VendorAuthSpec(_Frozen):
    key: str


class VendorSpec(_Frozen):
    name: str
    api: Literal["sendgrid", "ses", "postmark", "mailgun", "resend"]
    behaviors: list[VendorBehaviorSpec] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    corr_pattern: str = DEFAULT_CORR_PATTERN
    auth: VendorAuthSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return v

    @field_validator("corr_pattern")
    @classmethod
    def _corr(cls, v: str) -> str:
        if "corr" not in re.compile(v).groupindex:
            raise ValueError("needs a named group (?P<corr>...) that captures the correlation id")
        return v
