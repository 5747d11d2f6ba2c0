"""Transports of the reference mailer other than SMTP: the email vendors' official SDKs (`transports.api`)."""

from __future__ import annotations

from dataclasses import dataclass

APIS = ("sendgrid", "ses", "postmark", "mailgun", "resend")


@dataclass(frozen=True)
class ApiEndpoint:
    """A vendor reached through its SDK: the scenario's vendor name, its API, and the SDK's base URL."""

    name: str
    api: str
    url: str


def check_sdk(api: str) -> None:
    """Raise RuntimeError naming the `api` extra when the vendor's SDK is not installed."""
    import importlib

    module = {"ses": "boto3", "postmark": "postmarker"}.get(api, api)
    try:
        importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"--transport {api} needs the {module!r} SDK, which is not installed: pip install 'maildrill[api]' "
            f"(the mailer's optional vendor SDKs: sendgrid, boto3, postmarker, mailgun, resend)"
        ) from None
