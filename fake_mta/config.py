"""Fleet configuration: frozen pydantic models for MTAs and behaviours; YAML/JSON loading listing every problem."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from maildrill.fake_mta.webhook_spec import LAG_DISTRIBUTIONS, WebhookSpec
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from maildrill.vocabulary import BEHAVIOR_KINDS

DEFAULT_CORR_PATTERN = r"^(?P<corr>[A-Za-z0-9_.-]+)@"
DEFAULT_DATA_SIZE_LIMIT = 10 * 1024 * 1024
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
ENHANCED_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


class Verb(StrEnum):
    """Where in the SMTP dialogue a behaviour fires. `dot` is the reply to the end of DATA."""

    CONNECT = "connect"
    EHLO = "ehlo"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DOT = "dot"


class GoDarkMode(StrEnum):
    REFUSE = "refuse"  # listener closed: clients get "connection refused"
    HANG_BANNER = "hang_banner"  # TCP accepted, never speaks
    HANG_DATA = "hang_data"  # reads the message, never answers the final dot
    DROP_MID_DATA = "drop_mid_data"  # closes the connection while the client sends the message
    LOSE_ACK = "lose_ack"  # stores the message (accepted, ack lost), closes without the 250
    BLACKHOLE = "blackhole"  # says 250, records the message as discarded
    # HTTP vendors only (fake_mta.vendors)
    HANG = "hang"  # reads the request, never answers
    RESET = "reset"  # reads the request head, resets the connection before the body is read
    LOSE_RESPONSE = "lose_response"  # records the message accepted, closes without the response


MTA_ONLY_MODES = frozenset({GoDarkMode.HANG_BANNER, GoDarkMode.HANG_DATA, GoDarkMode.DROP_MID_DATA,
                            GoDarkMode.LOSE_ACK})
VENDOR_ONLY_MODES = frozenset({GoDarkMode.HANG, GoDarkMode.RESET, GoDarkMode.LOSE_RESPONSE})
# the vendor mode closest to each SMTP-only mode, for the error message
VENDOR_EQUIVALENT = {GoDarkMode.HANG_BANNER: "hang", GoDarkMode.HANG_DATA: "hang", GoDarkMode.DROP_MID_DATA: "reset",
                     GoDarkMode.LOSE_ACK: "lose_response"}
MTA_EQUIVALENT = {GoDarkMode.HANG: "hang_data", GoDarkMode.RESET: "drop_mid_data",
                  GoDarkMode.LOSE_RESPONSE: "lose_ack"}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplySpec(_Frozen):
    """One SMTP reply. `text` may be a list of lines (a multi-line reply, `code-text` on the wire).

    Text may use ``{rcpt}``, ``{domain}`` (the recipient's), ``{sender}``, ``{ip}`` and ``{verb}``.
    """

    code: int = Field(ge=200, le=599)
    enhanced: str | None = None
    text: str | list[str] = ""

    @field_validator("enhanced")
    @classmethod
    def _enhanced(cls, v: str | None) -> str | None:
        if v is not None and v != "" and not ENHANCED_RE.match(v):
            raise ValueError("must be an RFC 3463 enhanced status code like '4.7.0' (class.subject.detail)")
        return v or None

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | list[str]) -> str | list[str]:
        lines = [v] if isinstance(v, str) else v
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("a reply line cannot contain CR or LF; give a list of lines for a multi-line reply")
        return v

    @model_validator(mode="after")
    def _class_matches(self) -> ReplySpec:
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match reply class {self.code} (RFC 3463 §2)")
        return self


class _BehaviorBase(_Frozen):
    name: str | None = None  # how events name the behaviour (default: its kind)
    at: Verb | None = None  # default depends on the kind (and the preset); see docs/fake-mta.md
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    match_rcpt: str | None = None  # regex, re.search on the recipient
    match_sender: str | None = None  # regex, re.search on MAIL FROM
    reply: ReplySpec | None = None

    @field_validator("match_rcpt", "match_sender")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _matchers_fit_verb(self) -> _BehaviorBase:
        if self.match_rcpt is not None and self.at in (Verb.CONNECT, Verb.EHLO, Verb.AUTH, Verb.MAIL):
            raise ValueError(f"match_rcpt needs at: rcpt, data or dot (no recipient is known at {self.at})")
        if self.match_sender is not None and self.at in (Verb.CONNECT, Verb.EHLO, Verb.AUTH):
            raise ValueError(f"match_sender needs at: mail or later (no sender is known at {self.at})")
        return self


class AcceptSpec(_BehaviorBase):
    kind: Literal["accept"] = "accept"


class GreylistSpec(_BehaviorBase):
    kind: Literal["greylist"] = "greylist"
    min_delay_s: float = Field(default=300.0, ge=0)
    retry_window_s: float = Field(default=2 * 86400.0, gt=0)
    whitelist_s: float = Field(default=35 * 86400.0, ge=0)
    style: Literal["postgrey", "haraka"] | None = None

    @model_validator(mode="after")
    def _window(self) -> GreylistSpec:
        if self.retry_window_s < self.min_delay_s:
            raise ValueError(
                f"retry_window_s ({self.retry_window_s:g}) must be >= min_delay_s ({self.min_delay_s:g}): "
                "a retry must be able to pass"
            )
        return self


class ThrottleSpec(_BehaviorBase):
    kind: Literal["throttle"] = "throttle"
    rate_per_s: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    # api_key: one bucket per API key (HTTP vendors only)
    scope: Literal["connection", "ip", "global", "api_key"] = "global"
    # "accepted": only commands let through use a token (a plain rate limit). "attempts": every attempt
    # counts, refused ones too, down to a debt of `burst` tokens: a sender that keeps hammering stays
    # over the limit (the self-sustaining retry storm of fixed-interval retries).
    count: Literal["accepted", "attempts"] = "accepted"
    # SES only: at most this many messages accepted per 24 h (from the first request); beyond it the
    # vendor answers SES's "Daily message quota exceeded"
    daily_quota: int | None = Field(default=None, ge=1)


class RejectSpec(_BehaviorBase):
    kind: Literal["reject"] = "reject"
    reason: Literal["unknown_user", "policy", "blocked", "auth"] = "unknown_user"


class TempfailSpec(_BehaviorBase):
    kind: Literal["tempfail"] = "tempfail"
    code: Literal[450, 451, 452] = 451


class GoDarkSpec(_BehaviorBase):
    kind: Literal["go_dark"] = "go_dark"
    mode: GoDarkMode

    @model_validator(mode="after")
    def _no_at(self) -> GoDarkSpec:
        if self.at is not None:
            raise ValueError("go_dark fires where its mode says (refuse/hang_banner: connect, drop_mid_data: data, "
                             "hang_data/lose_ack/blackhole: dot); remove `at`")
        return self


class TarpitSpec(_BehaviorBase):
    kind: Literal["tarpit"] = "tarpit"
    delay_s: float = Field(ge=0, le=3600)


class WebhookPauseSpec(_BehaviorBase):
    """HTTP vendors with webhooks: sends are still accepted, delivery webhooks stop (the silent vendor).
    `hold`: they wait and all go out when the pause ends (late webhooks); `drop`: they are never sent.
    `match_rcpt` narrows it to some recipients; it never changes a send's answer."""

    kind: Literal["webhook_pause"] = "webhook_pause"
    mode: Literal["hold", "drop"] = "hold"

    @model_validator(mode="after")
    def _whole(self) -> WebhookPauseSpec:
        if self.probability != 1.0:
            raise ValueError("webhook_pause pauses every matching webhook; remove probability (use match_rcpt)")
        return self


BehaviorSpec = Annotated[
    AcceptSpec | GreylistSpec | ThrottleSpec | RejectSpec | TempfailSpec | GoDarkSpec | TarpitSpec | WebhookPauseSpec,
    Field(discriminator="kind"),
]
# The provider personas of maildrill.fake_mta.presets, by name (declared here, below the presets, which import
# this module; a test checks the two agree).
PRESET_NAMES = ("gmail", "microsoft", "yahoo", "ses", "postgrey", "haraka")
_BEHAVIORS = TypeAdapter(list[BehaviorSpec])
VENDOR_APIS = ("sendgrid", "ses", "postmark", "mailgun", "resend")


def mta_misfits(specs: list[Any]) -> list[str]:
    """What in a behaviour list only an HTTP vendor understands, as "[i] ..." messages (empty: all fits an MTA)."""
    out = []
    for i, b in enumerate(specs):
        if b.kind == "go_dark" and b.mode in VENDOR_ONLY_MODES:
            out.append(f"[{i}] go_dark mode {b.mode.value!r} is for HTTP vendors; the SMTP form is "
                       f"{MTA_EQUIVALENT[b.mode]!r}")
        elif b.kind == "throttle" and b.scope == "api_key":
            out.append(f"[{i}] throttle scope 'api_key' is for HTTP vendors; an MTA throttles per connection, ip "
                       "or global")
        elif b.kind == "throttle" and b.daily_quota is not None:
            out.append(f"[{i}] throttle daily_quota is for an SES vendor; remove it")
        elif b.kind == "webhook_pause":
            out.append(f"[{i}] webhook_pause is for HTTP vendors with webhooks; an MTA sends none")
    return out


def vendor_misfits(specs: list[Any], api: str) -> list[str]:
    """What in a behaviour list makes no sense for an HTTP vendor of `api`, as "[i] ..." messages."""
    out = []
    for i, b in enumerate(specs):
        if b.kind == "greylist":
            out.append(f"[{i}] greylist is an SMTP behaviour (a 4xx at RCPT per triplet); an email API has no "
                       "equivalent: use tempfail or throttle")
        elif b.kind == "go_dark" and b.mode in MTA_ONLY_MODES:
            out.append(f"[{i}] go_dark mode {b.mode.value!r} is SMTP-only; for an HTTP vendor use "
                       f"{VENDOR_EQUIVALENT[b.mode]!r} (modes: refuse, hang, reset, lose_response, blackhole)")
        elif b.at is not None:
            out.append(f"[{i}] `at` is an SMTP verb; a vendor decides once per request: remove it")
        elif b.kind == "throttle" and b.daily_quota is not None and api != "ses":
            out.append(f"[{i}] throttle daily_quota is SES's daily sending quota; a {api} vendor has none")
        if b.reply is not None:
            out.append(f"[{i}] `reply` is an SMTP reply; a vendor answers in its own wire format: remove it")
    return out


def _check_mta(specs: list[Any]) -> list[Any]:
    misfits = mta_misfits(specs)
    if misfits:
        raise ValueError("; ".join(misfits))
    return specs


_MTA_BEHAVIORS = TypeAdapter(Annotated[list[BehaviorSpec], AfterValidator(_check_mta)])


AuthMechanism = Literal["PLAIN", "LOGIN"]


def _both_mechanisms() -> list[AuthMechanism]:
    return ["PLAIN", "LOGIN"]


class AuthSpec(_Frozen):
    """AUTH PLAIN/LOGIN with one fixed account. `required`: MAIL without AUTH gets 530 5.7.0."""

    username: str
    password: str
    mechanisms: list[AuthMechanism] = Field(default_factory=_both_mechanisms, min_length=1)
    required: bool = False


class PhaseSpec(_Frozen):
    """At `at_s` seconds after the MTA starts, its behaviour list becomes `behaviors`."""

    at_s: float = Field(ge=0)
    behaviors: list[BehaviorSpec] = Field(default_factory=list)


class MTASpec(_Frozen):
    name: str = "mta"
    preset: str | None = None
    behaviors: list[BehaviorSpec] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    corr_pattern: str = DEFAULT_CORR_PATTERN
    auth: AuthSpec | None = None
    starttls: bool = False
    data_size_limit: int = Field(default=DEFAULT_DATA_SIZE_LIMIT, ge=1)
    timeline: list[PhaseSpec] = Field(default_factory=list)
    hostname: str | None = None  # name in the banner and EHLO reply (default: the preset's, else mx.<name>.test)
    timeout_s: float = Field(default=300.0, gt=0)  # idle timeout before the server closes (RFC 5321 §4.5.3.2.7)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return v

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESET_NAMES:
            raise ValueError(f"unknown preset; choose one of {sorted(PRESET_NAMES)}")
        return v

    @field_validator("corr_pattern")
    @classmethod
    def _corr(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        if "corr" not in rx.groupindex:
            raise ValueError("needs a named group (?P<corr>...) that captures the correlation id")
        return v

    @field_validator("timeline")
    @classmethod
    def _ordered(cls, v: list[PhaseSpec]) -> list[PhaseSpec]:
        times = [p.at_s for p in v]
        if times != sorted(times):
            raise ValueError(f"phases must be in time order; got at_s {times}")
        return v

    @model_validator(mode="after")
    def _smtp_only(self) -> MTASpec:
        misfits = [f"behaviors{m}" for m in mta_misfits(self.behaviors)]
        for j, phase in enumerate(self.timeline):
            misfits += [f"timeline[{j}].behaviors{m}" for m in mta_misfits(phase.behaviors)]
        if misfits:
            raise ValueError("; ".join(misfits))
        return self


class VendorSpec(_Frozen):
    """A fake HTTP email-API vendor (fake_mta.vendors). `auth`: the one API key accepted (else any key is)."""

    name: str = "vendor"
    api: Literal["sendgrid", "ses", "postmark", "mailgun", "resend"]
    behaviors: list[BehaviorSpec] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    corr_pattern: str = DEFAULT_CORR_PATTERN
    auth: str | None = None
    timeline: list[PhaseSpec] = Field(default_factory=list)
    webhooks: WebhookSpec | None = None  # delivery webhooks to the SUT (fake_mta.vendors.webhooks)

    _name = field_validator("name")(MTASpec._name.__func__)  # type: ignore[attr-defined]
    _corr = field_validator("corr_pattern")(MTASpec._corr.__func__)  # type: ignore[attr-defined]
    _ordered = field_validator("timeline")(MTASpec._ordered.__func__)  # type: ignore[attr-defined]

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "\r\n")):
            raise ValueError("an API key must be non-empty, one line")
        return v

    @model_validator(mode="after")
    def _http_only(self) -> VendorSpec:
        misfits = [f"behaviors{m}" for m in vendor_misfits(self.behaviors, self.api)]
        for j, phase in enumerate(self.timeline):
            misfits += [f"timeline[{j}].behaviors{m}" for m in vendor_misfits(phase.behaviors, self.api)]
        if self.webhooks is not None:
            misfits += [f"webhooks.{m}" for m in self.webhooks.misfits(self.api)]
        if misfits:
            raise ValueError("; ".join(misfits))
        return self


class ControlSpec(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    token: str | None = None


class FleetSpec(_Frozen):
    mtas: list[MTASpec] = Field(default_factory=list)
    vendors: list[VendorSpec] = Field(default_factory=list)
    control: ControlSpec = Field(default_factory=ControlSpec)

    @model_validator(mode="after")
    def _unique(self) -> FleetSpec:
        if not self.mtas and not self.vendors:
            raise ValueError("a fleet needs at least one entry in `mtas` or `vendors`")
        members: list[MTASpec | VendorSpec] = [*self.mtas, *self.vendors]
        names = [m.name for m in members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"MTA and vendor names must be unique across the fleet; repeated: {dupes}")
        ports = [(m.host, m.port) for m in members if m.port]
        taken = sorted({f"{h}:{p}" for h, p in ports if ports.count((h, p)) > 1})
        if taken:
            raise ValueError(f"two MTAs cannot listen on the same address: {taken}")
        return self


class ConfigError(ValueError):
    """A fleet config (or behaviour list) with problems; `problems` lists every one as (path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''}"]
        for path, msg in problems:
            # messages carrying the value read "= -5: must be >= 0", joined as "a.b = -5: must be >= 0"
            lines.append(f"  {path} {msg}" if path and msg.startswith("= ") else f"  {path}: {msg}" if path
                         else f"  {msg}")
        super().__init__("\n".join(lines))


def problems_of(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Pydantic errors as ``("mtas[0].behaviors[1].min_delay_s", "= -5: must be >= 0 ...")`` pairs."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        parts: list[str] = [prefix] if prefix else []
        loc = list(err["loc"])
        for i, item in enumerate(loc):
            # pydantic puts the discriminator tag (e.g. 'greylist') after a list index; users never wrote it
            if isinstance(item, str) and i > 0 and isinstance(loc[i - 1], int) and item in BEHAVIOR_KINDS:
                continue
            if i > 0 and loc[i - 1] == "lag_s" and item in LAG_DISTRIBUTIONS:
                continue
            if isinstance(item, int):
                parts.append(f"[{item}]")
            else:
                parts.append(f".{item}" if parts else item)
        path = "".join(parts)
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        msg = msg.replace("Input should be", "must be", 1).replace("greater than or equal to", ">=")
        msg = msg.replace("less than or equal to", "<=").replace("greater than", ">").replace("less than", "<")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found") and "lag_s" in loc:
            msg = f"a lag needs a `distribution`; one of {list(LAG_DISTRIBUTIONS)}"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown behaviour kind; choose one of {list(BEHAVIOR_KINDS)}"
        elif err["type"] == "union_tag_not_found":
            msg = f"each behaviour needs a `kind`; one of {list(BEHAVIOR_KINDS)}"
        elif err["type"] == "missing":
            msg = "required; add it"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling"
        value = err.get("input")
        if err["type"] not in ("missing", "union_tag_not_found") and isinstance(value, str | int | float | bool):
            out.append((path, f"= {value!r}: {msg}" if path else msg))
        else:
            out.append((path, msg))
    return out


def parse_behaviors(items: list[dict[str, Any]] | list[Any], *, for_mta: bool = False) -> list[BehaviorSpec]:
    """Validate a behaviour list (plain dicts or specs). Raises pydantic's ValidationError.
    `for_mta`: also refuse what only an HTTP vendor understands (see `mta_misfits`)."""
    return (_MTA_BEHAVIORS if for_mta else _BEHAVIORS).validate_python(items)


def parse_vendor_behaviors(items: list[dict[str, Any]] | list[Any], api: str) -> list[BehaviorSpec]:
    """A behaviour list for a vendor of `api`; raises pydantic's ValidationError (what an MTA-only item is)."""

    def check(specs: list[Any]) -> list[Any]:
        misfits = vendor_misfits(specs, api)
        if misfits:
            raise ValueError("; ".join(misfits))
        return specs

    return TypeAdapter(Annotated[list[BehaviorSpec], AfterValidator(check)]).validate_python(items)


def parse_fleet(data: Any, *, source: str = "fleet config") -> FleetSpec:
    """A fleet from plain data: a mapping with `mtas` (and optional `control`). Raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "must be a mapping with an `mtas` and/or `vendors` list, "
                                        f"got {type(data).__name__}")])
    problems: list[tuple[str, str]] = []
    try:
        return FleetSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems_of(exc)
    # cross-entry checks run in FleetSpec only once every entry is valid: repeat the name check here
    # so that one pass lists every problem
    mtas = data.get("mtas")
    vendors = data.get("vendors")
    members = [("mtas", i, m, "mta") for i, m in enumerate(mtas)] if isinstance(mtas, list) else []
    members += [("vendors", i, v, "vendor") for i, v in enumerate(vendors)] if isinstance(vendors, list) else []
    if not any(p in ("mtas", "vendors") or p.startswith(("mtas:", "vendors:")) for p, _ in problems):
        names = [m.get("name", default) for _, _, m, default in members if isinstance(m, dict)]
        for key, i, m, default in members:
            if isinstance(m, dict) and names.count(m.get("name", default)) > 1:
                problems.append((f"{key}[{i}].name",
                                 f"= {m.get('name', default)!r}: MTA and vendor names must be unique"))
    raise ConfigError(source, problems)


def load_fleet_config(path: str | Path) -> FleetSpec:
    """Read a fleet config (YAML or JSON). Raises ConfigError (a ValueError) listing every problem with its path."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("", f"cannot read the file ({exc.strerror or exc})")]) from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(str(p), [("", f"not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}")]) from None
    return parse_fleet(data, source=str(p))
