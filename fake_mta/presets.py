"""Provider personas: faithful reply wording, the verb each provider refuses at, a banner and a default stress response.

Sources: the providers' published error pages and real transcripts.
Placeholders (``{ip}``, ``{rcpt}``, ``{domain}``) are filled per reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maildrill.fake_mta.config import BehaviorSpec, Verb, parse_behaviors
from maildrill.fake_mta.reply import GREYLIST_HARAKA, GREYLIST_POSTGREY, Reply

_GMAIL_RATE = (
    "[{ip}] Our system has detected an unusual rate of",
    "unsolicited mail originating from your IP address. To protect our",
    "users from spam, mail sent from your IP address has been temporarily",
    "rate limited. Please visit",
    " https://support.google.com/mail/?p=UnsolicitedRateLimitError to",
    "review our Bulk Email Senders Guidelines. a1b2c3d4e5f6 - gsmtp",
)


@dataclass(frozen=True)
class Persona:
    """How one provider speaks. `replies` maps a behaviour key (``throttle``, ``greylist``,
    ``reject.unknown_user``, ``tempfail.452`` ...) to its wording; `verbs` maps a behaviour kind to the
    verb the provider uses for it; `behaviors` is its typical stress response (used when an MTA names
    the preset and gives no behaviours of its own)."""

    name: str
    hostname: str
    banner: str  # text after "220 <hostname> "
    replies: dict[str, Reply] = field(default_factory=dict)
    verbs: dict[str, Verb] = field(default_factory=dict)
    behaviors: tuple[dict[str, object], ...] = ()

    def reply_for(self, key: str) -> Reply | None:
        return self.replies.get(key)

    def verb_for(self, kind: str) -> Verb | None:
        return self.verbs.get(kind)

    def default_behaviors(self) -> list[BehaviorSpec]:
        return parse_behaviors(list(self.behaviors))



# The wording every MTA without a preset uses (Postfix-like, RFC 5321 texts).
GENERIC = Persona(
    name="generic",
    hostname="mx.drill.test",
    banner="ESMTP maildrill",
    replies={"greylist": GREYLIST_POSTGREY},
)

PRESETS: dict[str, Persona] = {
    "gmail": Persona(
        name="gmail",
        hostname="mx.google.com",
        banner="ESMTP a1b2c3d4e5f6 - gsmtp",
        replies={
            "throttle": Reply(421, "4.7.28", _GMAIL_RATE),
            "tempfail.450": Reply(450, "4.2.1", (
                "The user you are trying to contact is receiving mail at a rate that",
                "prevents additional messages from being delivered. a1b2c3d4e5f6 - gsmtp",
            )),
            "tempfail.452": Reply(452, "4.2.2", (
                "The recipient's inbox is out of storage space. Please direct the",
                "recipient to https://support.google.com/mail/?p=OverQuotaTemp a1b2c3d4e5f6 - gsmtp",
            )),
            "reject.unknown_user": Reply(550, "5.1.1", (
                "The email account that you tried to reach does not exist. Please try",
                "double-checking the recipient's email address for typos or",
                "unnecessary spaces. For more information, go to",
                " https://support.google.com/mail/?p=NoSuchUser a1b2c3d4e5f6 - gsmtp",
            )),
            "reject.policy": Reply(550, "5.7.1", (
                "This message does not meet IPv4 sending guidelines regarding PTR",
                "records and authentication. a1b2c3d4e5f6 - gsmtp",
            )),
            "reject.auth": Reply(535, "5.7.8", (
                "Username and Password not accepted. Learn more at",
                "https://support.google.com/mail/?p=BadCredentials a1b2c3d4e5f6 - gsmtp",
            )),
        },
        verbs={"throttle": Verb.MAIL},
        behaviors=({"kind": "throttle", "rate_per_s": 20, "burst": 40, "scope": "ip"},),
    ),
    "microsoft": Persona(
        name="microsoft",
        hostname="mx.outlook.example",
        banner="Microsoft ESMTP MAIL Service ready",
        replies={
            "throttle": Reply(451, "4.7.650", (
                "The mail server [{ip}] has been temporarily rate limited due to IP reputation. "
                "For e-mail delivery information, see https://postmaster.live.com (S775)",
            )),
            "reject.unknown_user": Reply(550, "5.5.0", ("Requested action not taken: mailbox unavailable (S2017)",)),
            "reject.blocked": Reply(550, "5.7.1", (
                "Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet service "
                "provider since part of their network is on our block list (S3150).",
            )),
        },
        verbs={"throttle": Verb.MAIL},
        behaviors=({"kind": "throttle", "rate_per_s": 10, "burst": 20, "scope": "ip"},),
    ),
    "yahoo": Persona(
        name="yahoo",
        hostname="mta7.am0.yahoodns.net",
        banner="ESMTP ready",
        replies={
            "throttle": Reply(421, "4.7.0", (
                "[TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user "
                "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            )),
            "reject.unknown_user": Reply(554, "5.7.9", ("Message not accepted for policy reasons.",)),
        },
        verbs={"throttle": Verb.MAIL},
        behaviors=({"kind": "throttle", "rate_per_s": 10, "burst": 20, "scope": "ip"},),
    ),
    "ses": Persona(
        name="ses",
        hostname="email-smtp.us-east-1.amazonaws.com",
        banner="ESMTP SimpleEmailService-d-A1B2C3D4E5",
        replies={
            "throttle": Reply(454, None, ("Throttling failure: Maximum sending rate exceeded.",)),
            "tempfail.452": Reply(454, None, ("Throttling failure: Daily message quota exceeded.",)),
            "reject.auth": Reply(535, None, ("Authentication Credentials Invalid",)),
        },
        verbs={"throttle": Verb.DATA},
        behaviors=({"kind": "throttle", "rate_per_s": 14, "burst": 14, "scope": "global"},),
    ),
    "postgrey": Persona(
        name="postgrey",
        hostname="mail.postgrey.test",
        banner="ESMTP Postfix",
        replies={"greylist": GREYLIST_POSTGREY},
        verbs={"greylist": Verb.RCPT},
        behaviors=({"kind": "greylist", "min_delay_s": 300, "retry_window_s": 2 * 86400,
                    "whitelist_s": 35 * 86400},),
    ),
    "haraka": Persona(
        name="haraka",
        hostname="mx.haraka.test",
        banner="ESMTP Haraka/3.0.3 ready",
        replies={"greylist": GREYLIST_HARAKA},
        verbs={"greylist": Verb.RCPT},
        behaviors=({"kind": "greylist", "min_delay_s": 850, "retry_window_s": 25 * 3600,
                    "whitelist_s": 35 * 86400},),
    ),
}


def persona(name: str | None) -> Persona:
    """The named persona, or GENERIC for None. Raises KeyError listing the choices."""
    if name is None:
        return GENERIC
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
