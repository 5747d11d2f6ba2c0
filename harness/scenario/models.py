"""The scenario file as frozen pydantic models (scenario time; `maildrill.harness.scenario.scaling` makes run time)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from maildrill.fake_mta.config import NAME_RE, BehaviorSpec, MTASpec, VendorSpec, mta_misfits, vendor_misfits
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

SHAPE_KINDS = ("constant", "ramp", "step", "spike", "burst")
TEMPLATE_FIELDS = ("corr", "recipient", "class", "resend", "user")
_FIELD_RE = re.compile(r"\{([^{}]*)\}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_template(v: str, *, needs: tuple[str, ...] = ()) -> str:
    """Templates use ``{corr}``, ``{recipient}``, ``{class}``, ``{resend}``, ``{user}``; ``{{``/``}}`` for braces."""
    names = _FIELD_RE.findall(v.replace("{{", "").replace("}}", ""))
    unknown = [n for n in names if n not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"unknown template field {{{unknown[0]}}}; available: "
                         + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS))
    for n in needs:
        if n not in names:
            raise ValueError(f"must contain {{{n}}} (the correlation id the fake MTA reads back from the recipient)")
    return v


# --- load shapes: rates in requests per second, times in seconds from the start of the load phase -----
class ConstantShape(_Frozen):
    kind: Literal["constant"] = "constant"
    rps: float = Field(ge=0)


class RampShape(_Frozen):
    """`from_rps` until `start_s`, linear to `to_rps` over `ramp_s`, then `to_rps`."""

    kind: Literal["ramp"] = "ramp"
    from_rps: float = Field(default=0.0, ge=0)
    to_rps: float = Field(ge=0)
    start_s: float = Field(default=0.0, ge=0)
    ramp_s: float = Field(gt=0)


class Step(_Frozen):
    at_s: float = Field(ge=0)
    rps: float = Field(ge=0)


class StepShape(_Frozen):
    """The rate is `rps` of the last step whose `at_s` has passed (0 before the first)."""

    kind: Literal["step"] = "step"
    steps: list[Step] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _ordered(cls, v: list[Step]) -> list[Step]:
        times = [s.at_s for s in v]
        if times != sorted(times):
            raise ValueError(f"steps must be in time order; got at_s {times}")
        return v


class SpikeShape(_Frozen):
    """`base_rps`, then (after `ramp_s`) `peak_rps` from `start_s` for `hold_s`, then back to `base_rps`."""

    kind: Literal["spike"] = "spike"
    base_rps: float = Field(default=0.0, ge=0)
    peak_rps: float = Field(ge=0)
    start_s: float = Field(ge=0)
    hold_s: float = Field(gt=0)
    ramp_s: float = Field(default=0.0, ge=0)


class BurstShape(_Frozen):
    """`count` requests at once at `at_s` (the launch e-mail blast), on top of `base_rps`."""

    kind: Literal["burst"] = "burst"
    count: int = Field(ge=1, le=1_000_000)
    at_s: float = Field(default=0.0, ge=0)
    base_rps: float = Field(default=0.0, ge=0)


ShapeSpec = Annotated[ConstantShape | RampShape | StepShape | SpikeShape | BurstShape, Field(discriminator="kind")]


# --- traffic classes ----------------------------------------------------------------------------
class HTTPRequestSpec(_Frozen):
    """An HTTP request to the SUT. Strings in `path`, `json`, `body`, `headers` are templates."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(pattern=r"^/")
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    ok_status: list[int] = Field(default_factory=lambda: list(range(200, 300)), min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_body(self) -> HTTPRequestSpec:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give `json` or `body`, not both")
        _check_template(self.path)
        return self


class SMTPRequestSpec(_Frozen):
    """Submit one message over SMTP (e.g. to a Postfix SUT). host/port default to the SUT's."""

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    mail_from: str = "drill@sender.drill.test"
    subject: str = "maildrill {class} for {recipient}"
    body: str = "maildrill {class} message {corr} (resend {resend})"


class ClassSpec(_Frozen):
    """One kind of traffic (OTP, password reset, newsletter): its share, its TTL, its request, its users' patience."""

    name: str
    weight: float = Field(default=1.0, gt=0)
    ttl_s: float = Field(default=60.0, gt=0)
    request: HTTPRequestSpec | None = None
    smtp: SMTPRequestSpec | None = None
    resend_after_s: float | None = Field(default=None, gt=0)
    max_resends: int = Field(default=0, ge=0, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ClassSpec:
        if (self.request is None) == (self.smtp is None):
            raise ValueError("give exactly one of `request` (HTTP) or `smtp` (submit over SMTP)")
        if self.max_resends and self.resend_after_s is None:
            raise ValueError("max_resends needs resend_after_s (how long a user waits before asking again)")
        return self


class LoadSpec(_Frozen):
    shape: ShapeSpec
    recipient: str = "{corr}@users.drill.test"
    classes: list[ClassSpec] = Field(min_length=1)
    users: int | None = Field(default=None, ge=1, le=10_000)  # concurrent request slots; default from the shape
    timeout_s: float = Field(default=10.0, gt=0)  # per request

    @field_validator("recipient")
    @classmethod
    def _recipient(cls, v: str) -> str:
        _check_template(v, needs=("corr",))
        if "{recipient}" in v:
            raise ValueError("the recipient template cannot contain {recipient}")
        return v


# --- system under test --------------------------------------------------------------------------
class ReadySpec(_Frozen):
    """When a started SUT counts as ready: an HTTP path on its port answering 2xx, else its port accepting
    TCP connections; `tcp: false` (and no `http`) means ready as soon as it is started."""

    http: str | None = Field(default=None, pattern=r"^/")
    tcp: bool | None = None
    timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _one(self) -> ReadySpec:
        if self.http is not None and self.tcp is not None:
            raise ValueError("give `http: /path` or `tcp: true|false`, not both")
        return self


def _number_as_text(v: Any) -> Any:
    """YAML reads `--workers, 4` or `WORKERS: 4` as a number; a command line and an environment hold text."""
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


Arg = Annotated[str, BeforeValidator(_number_as_text)]


class QueueDepthSpec(_Frozen):
    """A probe of the SUT's own queue: a Prometheus gauge at `http` (`metric` names it), or a `command` that
    prints a number."""

    http: str | None = None
    metric: str | None = None
    command: list[Arg] | None = Field(default=None, min_length=1)
    interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _one(self) -> QueueDepthSpec:
        if (self.http is None) == (self.command is None):
            raise ValueError("give exactly one of `http` (a Prometheus URL or path) or `command`")
        if self.http is not None and not self.metric:
            raise ValueError("`http` needs `metric`: the name of the gauge to read")
        return self


class SUTSpec(_Frozen):
    command: list[Arg] | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, pattern=r"^https?://")
    ready: ReadySpec = Field(default_factory=ReadySpec)
    env: dict[str, Arg] = Field(default_factory=dict)
    stop_grace_s: float = Field(default=5.0, gt=0, le=300)
    queue_depth: QueueDepthSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> SUTSpec:
        if self.command is not None and self.url is not None:
            raise ValueError("give `command` (maildrill starts the SUT) or `url` (a SUT already running), not both")
        return self


# --- proxies and the timeline -------------------------------------------------------------------
class ProxySpec(_Frozen):
    name: str
    upstream: str  # an MTA or vendor name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return v


class ToxicSpec(_Frozen):
    type: Literal["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"]
    attributes: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)  # Toxiproxy's are integers
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0, le=1)
    name: str | None = None


class ActionSpec(_Frozen):
    """One timeline entry: at `at_s` (from the start of the load phase) change an MTA, a vendor or a proxy, or
    crash the SUT (`sut: crash`: kill -9 of the process group maildrill started); with `for_s`, undo it that
    long after (for a crash: start the SUT again, same command, environment and port)."""

    at_s: float = Field(ge=0)
    for_s: float | None = Field(default=None, gt=0)
    mta: str | None = None
    vendor: str | None = None
    set: list[BehaviorSpec] | None = None
    proxy: str | None = None
    toxic: ToxicSpec | None = None
    enabled: bool | None = None
    sut: Literal["crash"] | None = None

    @field_validator("set")
    @classmethod
    def _set_fits_target(cls, v: list[BehaviorSpec] | None, info: ValidationInfo) -> list[BehaviorSpec] | None:
        """A vendor's behaviours are checked as an HTTP vendor's (its go_dark modes; what depends on its `api`,
        such as SES's daily quota, is checked against the named vendor when the file is loaded), anything
        else's as an MTA's."""
        if v is None:
            return v
        misfits = vendor_misfits(v, "ses") if info.data.get("vendor") is not None else mta_misfits(v)
        if misfits:
            raise ValueError("; ".join(misfits))
        return v

    @model_validator(mode="after")
    def _shape(self) -> ActionSpec:
        if sum(x is not None for x in (self.mta, self.vendor, self.proxy, self.sut)) != 1:
            raise ValueError("name exactly one target: `mta: NAME`, `vendor: NAME`, `proxy: NAME` or `sut: crash`")
        if self.sut is not None:
            if self.set is not None or self.toxic is not None or self.enabled is not None:
                raise ValueError("a SUT action is `sut: crash` alone (with `for_s` to start it again)")
            return self
        if self.mta is not None or self.vendor is not None:
            if self.set is None or self.toxic is not None or self.enabled is not None:
                what = "an MTA" if self.mta is not None else "a vendor"
                raise ValueError(f"{what} action needs `set: [behaviours]` (and no `toxic`/`enabled`)")
        elif (self.toxic is None) == (self.enabled is None) or self.set is not None:
            raise ValueError("a proxy action needs exactly one of `toxic: {type, attributes}` or `enabled: true|false`")
        return self

    @property
    def target(self) -> str:
        if self.sut is not None:
            return "sut"
        if self.vendor is not None:
            return f"vendor/{self.vendor}"
        return f"mta/{self.mta}" if self.mta is not None else f"proxy/{self.proxy}"


OVER = ("min", "median", "mean", "p90", "max")  # the statistics `over` takes (maildrill.harness.verdict computes them)


class ThresholdSpec(_Frozen):
    """`max` and/or `min` on a metric; with `over`, a statistic of the metric across the runs of
    `maildrill run --repeat N` is judged instead of each run (one run: the statistic is its value)."""

    max: float | None = None
    min: float | None = None
    over: Literal["min", "median", "mean", "p90", "max"] | None = None

    @model_validator(mode="after")
    def _some(self) -> ThresholdSpec:
        if self.max is None and self.min is None:
            raise ValueError("give `max`, `min` or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}); nothing can pass")
        return self


class Scenario(_Frozen):
    """A whole drill, in scenario time (as written). Cross-references are checked by `scenario.loading`."""

    version: Literal[1]
    name: str
    description: str = ""
    seed: int = 0
    duration_s: float = Field(gt=0, le=7 * 86400)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    time_scale: float = Field(default=1.0, gt=0, le=1000)
    mtas: list[MTASpec] = Field(default_factory=list)
    vendors: list[VendorSpec] = Field(default_factory=list)
    proxies: list[ProxySpec] = Field(default_factory=list)
    sut: SUTSpec | None = None
    load: LoadSpec
    timeline: list[ActionSpec] = Field(default_factory=list)
    thresholds: dict[str, ThresholdSpec] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _some_receiver(self) -> Scenario:
        if not self.mtas and not self.vendors:
            raise ValueError("give at least one receiver: `mtas:` (fake SMTP servers) and/or `vendors:` "
                             "(fake email APIs)")
        return self

    def proxy_for(self, mta: str) -> ProxySpec | None:
        """The proxy fronting the MTA or vendor of that name, if any."""
        return next((p for p in self.proxies if p.upstream == mta), None)

    def to_plain(self) -> dict[str, Any]:
        """Plain JSON-able data that `load_scenario` reads back to an equal model."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
