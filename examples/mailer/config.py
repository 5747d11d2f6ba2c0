"""Settings of the reference mailer: flags, profiles and the MAILDRILL_* environment, resolved into one frozen value."""

from __future__ import annotations

import argparse
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from maildrill.examples.mailer.transports import APIS, ApiEndpoint, check_sdk


class ConfigError(ValueError):
    """A flag or environment variable is invalid; the message says what, why and the fix."""


class RetryKind(StrEnum):
    NONE = "none"
    FIXED = "fixed"
    EXP = "exp"


class Jitter(StrEnum):
    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


@dataclass(frozen=True)
class RetrySpec:
    """`none`, `fixed:<s>` or `exp:<base>,<cap>` (seconds, before time scaling)."""

    kind: RetryKind
    base_s: float = 0.0
    cap_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> RetrySpec:
        text = text.strip()
        if text == "none":
            return cls(RetryKind.NONE)
        m = re.fullmatch(r"fixed:(\d+(?:\.\d+)?)", text)
        if m:
            return cls(RetryKind.FIXED, float(m[1]), float(m[1]))
        m = re.fullmatch(r"exp:(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)", text)
        if m:
            base, cap = float(m[1]), float(m[2])
            if base <= 0 or cap < base:
                raise ConfigError(f"--retry {text!r}: need 0 < base <= cap (seconds); e.g. exp:1,30")
            return cls(RetryKind.EXP, base, cap)
        raise ConfigError(
            f"--retry {text!r}: not a retry policy; use none, fixed:<s> (fixed:2) or exp:<base>,<cap> (exp:1,30)"
        )


@dataclass(frozen=True)
class RateSpec:
    """A token bucket: `tokens` per `period_s` (before time scaling); burst = max(1, tokens per second)."""

    tokens: float
    period_s: float

    @classmethod
    def parse(cls, text: str) -> RateSpec:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:/(s|min|h))?", text.strip())
        if not m or float(m[1]) <= 0:
            raise ConfigError(f"--rate-limit {text!r}: use a positive rate like 50, 50/s, 600/min or 500/h")
        return cls(float(m[1]), {"s": 1.0, "min": 60.0, "h": 3600.0}[m[2] or "s"])


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    """Everything the mailer needs; timers are already multiplied by `time_scale`."""

    host: str
    port: int
    primary: Endpoint
    backup: Endpoint | None
    failover_after: int
    retry: RetrySpec
    jitter: Jitter
    max_attempts: int
    retry_5xx: bool
    lanes: bool
    pool_backoff: bool
    idempotency: bool
    resend_cooldown_s: float
    rate: RateSpec | None
    time_scale: float
    workers: int
    db_path: Path
    redis_url: str | None
    redis_prefix: str
    control_url: str | None
    lease_s: float
    smtp_timeout_s: float
    seed: int  # --seed, else $MAILDRILL_SEED (a drill's seed), else drawn at start (and printed)
    profile: str | None = None
    # the API path (transports/api.py): SDK transports and their policies
    transport: str = "smtp"
    api_primary: ApiEndpoint | None = None
    api_backup: ApiEndpoint | None = None
    honour_retry_after: bool = False
    api_timeout_s: float | None = None  # None = the SDK's default (none for sendgrid-python and postmarker)
    sdk_retries: bool = True
    api_idempotency_key: bool = False
    hold_unknown: bool = False
    ignore_late_webhooks: bool = False
    failover_on_silence_s: float = 0.0  # scaled; 0 = fail over only on explicit errors
    # where the mailer records its webhook decisions as drill events ($MAILDRILL_RUN_DIR/events/sut-mailer.jsonl)
    events_path: Path | None = None

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale


PROFILES: dict[str, dict[str, object]] = {
    # the classic retry storm: fixed short retries, no jitter, 5xx retried, FIFO, no pool backoff, no dedupe.
    "naive": {
        "retry": "fixed:2",
        "jitter": "none",
        "retry_5xx": True,
        "lanes": False,
        "pool_backoff": False,
        "idempotency": False,
        "honour_retry_after": False,
        "api_timeout": 0.0,
        "sdk_retries": True,
        "api_idempotency_key": False,
        "hold_unknown": False,
        "ignore_late_webhooks": False,
    },
    "hardened": {
        "retry": "exp:1,30",
        "jitter": "full",
        "retry_5xx": False,
        "lanes": True,
        "pool_backoff": True,
        "idempotency": True,
        "honour_retry_after": True,
        "api_timeout": 5.0,
        "sdk_retries": False,
        "api_idempotency_key": True,
        "hold_unknown": True,
        "ignore_late_webhooks": True,
    },
}
DEFAULTS: dict[str, object] = {
    "retry": "exp:1,30",
    "jitter": "full",
    "retry_5xx": False,
    "lanes": False,
    "pool_backoff": False,
    "idempotency": False,
    "honour_retry_after": False,
    "api_timeout": 0.0,
    "sdk_retries": True,
    "api_idempotency_key": False,
    "hold_unknown": False,
    "ignore_late_webhooks": False,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maildrill.examples.mailer", description=__doc__)
    p.add_argument("--profile", choices=sorted(PROFILES), help="preset policies; explicit flags override")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default $MAILDRILL_SUT_PORT, else 8025)")
    p.add_argument("--retry", help="none | fixed:<s> | exp:<base>,<cap>")
    p.add_argument("--jitter", choices=[j.value for j in Jitter])
    p.add_argument("--max-attempts", type=int, default=20, help="attempts per message before giving up (default 20)")
    p.add_argument("--retry-5xx", action=argparse.BooleanOptionalAction, help="retry permanent failures (a bug)")
    p.add_argument("--lanes", action=argparse.BooleanOptionalAction, help="OTP/password-reset before newsletter")
    p.add_argument(
        "--pool-backoff", action=argparse.BooleanOptionalAction, help="a 421 pauses every worker's sends to that vendor"
    )
    p.add_argument(
        "--idempotency",
        action=argparse.BooleanOptionalAction,
        help="ask the vendor's status API before re-sending after an unknown outcome",
    )
    p.add_argument(
        "--transport",
        choices=["smtp", *APIS],
        default="smtp",
        help="how the primary is reached: smtp (default) or a vendor's official SDK (needs the 'api' extra)",
    )
    p.add_argument("--backup-transport", choices=["smtp", *APIS], help="the backup's transport (default: --transport)")
    p.add_argument(
        "--honour-retry-after",
        action=argparse.BooleanOptionalAction,
        help="on a 429, pause every worker's sends to that vendor until its Retry-After / X-RateLimit-Reset",
    )
    p.add_argument(
        "--api-timeout",
        type=float,
        help="seconds the SDK waits on one API request; 0 = the SDK's default (sendgrid-python: none, forever)",
    )
    p.add_argument(
        "--sdk-retries",
        action=argparse.BooleanOptionalAction,
        help="leave the SDK's own retries on (boto3 legacy mode, mailgun's RetryPolicy): its default",
    )
    p.add_argument(
        "--api-idempotency-key",
        action=argparse.BooleanOptionalAction,
        help="send the message id as Idempotency-Key where the vendor honours one (Resend)",
    )
    p.add_argument(
        "--hold-unknown",
        action=argparse.BooleanOptionalAction,
        help="after a response lost mid-request, don't re-send (unless the vendor takes an idempotency key)",
    )
    p.add_argument(
        "--failover-on-silence",
        type=float,
        default=0.0,
        help="seconds (scaled) after an accepted API send with no webhook before it is sent again via the backup; "
        "0 (default) = fail over only on explicit errors",
    )
    p.add_argument(
        "--ignore-late-webhooks",
        action=argparse.BooleanOptionalAction,
        help="a webhook from a vendor that no longer owns the message (it failed over since) changes nothing",
    )
    p.add_argument(
        "--primary", help="name of the primary vendor (MAILDRILL_SMTP_<NAME>_HOST/_PORT or MAILDRILL_API_<NAME>_URL)"
    )
    p.add_argument(
        "--failover-to", help="backup vendor name (MAILDRILL_SMTP_<NAME>_HOST/_PORT or MAILDRILL_API_<NAME>_URL)"
    )
    p.add_argument("--failover-after", type=int, default=3, help="consecutive primary failures before failover")
    p.add_argument(
        "--resend-cooldown", type=float, default=0.0, help="seconds a same recipient+kind resend is coalesced"
    )
    p.add_argument("--rate-limit", help="token bucket towards the relay: R, R/s, R/min or R/h")
    p.add_argument("--workers", type=int, help="delivery workers (default $MAILER_WORKERS, else 4)")
    p.add_argument("--db", help="SQLite queue file (default $MAILDRILL_RUN_DIR/mailer-queue.sqlite3)")
    p.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="seconds a claimed message stays claimed before another process may take it (not scaled)",
    )
    p.add_argument("--smtp-timeout", type=float, default=10.0, help="seconds to wait on one SMTP reply (not scaled)")
    p.add_argument("--seed", type=int, help="seed of the retry jitter (default $MAILDRILL_SEED, else random)")
    return p


def _endpoint(env: Mapping[str, str], name: str, *, flag: str) -> Endpoint:
    key = "MAILDRILL_SMTP_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    host, port = env.get(key + "_HOST"), env.get(key + "_PORT")
    if not port:
        known = sorted(
            {
                k[len("MAILDRILL_SMTP_") : -len("_PORT")]
                for k in env
                if k.startswith("MAILDRILL_SMTP_") and k.endswith("_PORT") and k != "MAILDRILL_SMTP_PORT"
            }
        )
        raise ConfigError(
            f"{flag} {name}: {key}_PORT is not set; vendors in the environment: {known or 'none'}. "
            f"Name an MTA of the scenario, or set {key}_HOST/{key}_PORT."
        )
    return Endpoint(name, host or "127.0.0.1", _port(port, key + "_PORT"))


def _api_endpoint(env: Mapping[str, str], name: str | None, api: str, *, flag: str) -> ApiEndpoint:
    check_sdk(api)
    if name is None:
        url = env.get("MAILDRILL_API_URL")
        if not url:
            raise ConfigError(
                f"--transport {api}: MAILDRILL_API_URL is not set. Run the mailer from a drill with vendors:, "
                f"or name the vendor with --primary NAME and set MAILDRILL_API_<NAME>_URL."
            )
        name = next(
            (
                k[len("MAILDRILL_API_") : -len("_URL")].lower()
                for k, v in sorted(env.items())
                if k.startswith("MAILDRILL_API_") and k.endswith("_URL") and k != "MAILDRILL_API_URL" and v == url
            ),
            "primary",
        )
        return ApiEndpoint(name, api, url)
    key = "MAILDRILL_API_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_URL"
    url = env.get(key)
    if not url:
        known = sorted(
            k[len("MAILDRILL_API_") : -len("_URL")].lower()
            for k in env
            if k.startswith("MAILDRILL_API_") and k.endswith("_URL") and k != "MAILDRILL_API_URL"
        )
        raise ConfigError(
            f"{flag} {name}: {key} is not set; API vendors in the environment: {known or 'none'}. "
            f"Name a vendor of the scenario, or set {key} to its base URL."
        )
    return ApiEndpoint(name, api, url)


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{where}={text!r}: not a TCP port; give a number 1..65535")
    return int(text)


def resolve(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Flags over profile over defaults; endpoints and scale from the MAILDRILL_* environment."""
    args = build_parser().parse_args(list(argv))
    chosen = {**DEFAULTS, **(PROFILES[args.profile] if args.profile else {})}
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            chosen[key] = value
    scale_text = env.get("MAILDRILL_TIME_SCALE", "1")
    try:
        time_scale = float(scale_text)
    except ValueError:
        time_scale = -1.0
    if time_scale <= 0:
        raise ConfigError(
            f"MAILDRILL_TIME_SCALE={scale_text!r}: must be a number > 0 (1 = real time, 0.1 = 10x faster)"
        )
    api_primary = api_backup = None
    backup_transport = args.backup_transport or args.transport
    if args.failover_on_silence < 0:
        raise ConfigError(f"--failover-on-silence {args.failover_on_silence}: must be >= 0 seconds (0 = off)")
    if args.failover_on_silence > 0 and (args.failover_to is None or backup_transport == "smtp"):
        raise ConfigError("--failover-on-silence needs an API backup: --failover-to NAME with an API transport")
    if args.api_timeout is not None and args.api_timeout < 0:
        raise ConfigError(f"--api-timeout {args.api_timeout}: must be >= 0 seconds (0 = the SDK's default)")
    try:
        if args.transport != "smtp":
            api_primary = _api_endpoint(env, args.primary, args.transport, flag="--primary")
        if args.failover_to and backup_transport != "smtp":
            api_backup = _api_endpoint(env, args.failover_to, backup_transport, flag="--failover-to")
    except RuntimeError as exc:  # the SDK is missing
        raise ConfigError(str(exc)) from None
    if api_primary is not None:
        primary = Endpoint(api_primary.name, api_primary.url, 0)
    elif args.primary:
        primary = _endpoint(env, args.primary, flag="--primary")
    else:
        if "MAILDRILL_SMTP_PORT" not in env:
            raise ConfigError(
                "MAILDRILL_SMTP_PORT is not set: the mailer needs a relay. Run it from a maildrill drill, "
                "or set MAILDRILL_SMTP_HOST/MAILDRILL_SMTP_PORT to your SMTP relay."
            )
        host, port = (
            env.get("MAILDRILL_SMTP_HOST", "127.0.0.1"),
            _port(env["MAILDRILL_SMTP_PORT"], "MAILDRILL_SMTP_PORT"),
        )
        # The first MTA's name is needed for the status API; find the named variable with the same address.
        name = next(
            (
                k[len("MAILDRILL_SMTP_") : -len("_PORT")].lower()
                for k, v in sorted(env.items())
                if k.startswith("MAILDRILL_SMTP_")
                and k.endswith("_PORT")
                and k != "MAILDRILL_SMTP_PORT"
                and v == str(port)
                and env.get(k[:-5] + "_HOST", "127.0.0.1") == host
            ),
            "primary",
        )
        primary = Endpoint(name, host, port)
    if api_backup is not None:
        backup: Endpoint | None = Endpoint(api_backup.name, api_backup.url, 0)
    else:
        backup = _endpoint(env, args.failover_to, flag="--failover-to") if args.failover_to else None
    for flag, value, low in (("--max-attempts", args.max_attempts, 1), ("--failover-after", args.failover_after, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    if args.resend_cooldown < 0 or args.lease <= 0 or args.smtp_timeout <= 0:
        raise ConfigError("--resend-cooldown must be >= 0, --lease and --smtp-timeout > 0 (seconds)")
    workers = args.workers if args.workers is not None else int(env.get("MAILER_WORKERS", "4") or 4)
    if not 1 <= workers <= 256:
        raise ConfigError(f"--workers/MAILER_WORKERS {workers}: use 1..256")
    if args.db:
        db_path = Path(args.db)
    elif env.get("MAILDRILL_RUN_DIR"):
        db_path = Path(env["MAILDRILL_RUN_DIR"]) / "mailer-queue.sqlite3"
    else:
        db_path = Path("mailer-queue.sqlite3")
    if args.seed is not None:
        seed = args.seed
    elif (seed_text := env.get("MAILDRILL_SEED", "").strip()):
        try:
            seed = int(seed_text)
        except ValueError:
            raise ConfigError(f"MAILDRILL_SEED={seed_text!r}: must be an integer (the drill's seed)") from None
    else:
        seed = random.SystemRandom().randrange(2**32)  # printed at start, so the run can be repeated with --seed
    port_text = str(args.port) if args.port is not None else env.get("MAILDRILL_SUT_PORT", "8025")
    return Settings(
        host=args.host,
        port=int(port_text) if port_text == "0" else _port(port_text, "--port/MAILDRILL_SUT_PORT"),
        primary=primary,
        backup=backup,
        failover_after=args.failover_after,
        retry=RetrySpec.parse(str(chosen["retry"])),
        jitter=Jitter(str(chosen["jitter"])),
        max_attempts=args.max_attempts,
        retry_5xx=bool(chosen["retry_5xx"]),
        lanes=bool(chosen["lanes"]),
        pool_backoff=bool(chosen["pool_backoff"]),
        idempotency=bool(chosen["idempotency"]),
        resend_cooldown_s=args.resend_cooldown * time_scale,
        rate=RateSpec.parse(args.rate_limit) if args.rate_limit else None,
        time_scale=time_scale,
        workers=workers,
        db_path=db_path,
        redis_url=env.get("MAILER_REDIS_URL") or None,
        redis_prefix=env.get("MAILER_REDIS_PREFIX") or "maildrill-mailer:",
        control_url=(env.get("MAILDRILL_CONTROL_URL") or "").rstrip("/") or None,
        lease_s=args.lease,
        smtp_timeout_s=args.smtp_timeout,
        seed=seed,
        profile=args.profile,
        transport=args.transport,
        api_primary=api_primary,
        api_backup=api_backup,
        honour_retry_after=bool(chosen["honour_retry_after"]),
        api_timeout_s=float(chosen["api_timeout"]) or None,  # type: ignore[arg-type]
        sdk_retries=bool(chosen["sdk_retries"]),
        api_idempotency_key=bool(chosen["api_idempotency_key"]),
        hold_unknown=bool(chosen["hold_unknown"]),
        ignore_late_webhooks=bool(chosen["ignore_late_webhooks"]),
        failover_on_silence_s=args.failover_on_silence * time_scale,
        events_path=Path(env["MAILDRILL_RUN_DIR"]) / "events" / "sut-mailer.jsonl" if env.get("MAILDRILL_RUN_DIR")
        else None,
    )


def from_environ(argv: Sequence[str]) -> Settings:
    return resolve(argv, dict(os.environ))
