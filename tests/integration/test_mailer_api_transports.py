"""The reference mailer's API transport against each fake vendor, through the vendor's real SDK: what one
attempt comes to (the outcome the retry policy sees), the vendor's message id, and its reset time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from maildrill.examples.mailer.policy import Outcome
from maildrill.examples.mailer.queue import Kind, Message, State
from maildrill.examples.mailer.transports import APIS, ApiEndpoint
from maildrill.examples.mailer.transports.api import ApiAttempt, ApiClients, SdkOptions
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread, api_events

HARDENED = SdkOptions(timeout_s=5.0, sdk_retries=False, idempotency_key=True)


def message(n: int, email: str | None = None) -> Message:
    return Message(n, Kind.OTP, email or f"u{n}@users.drill.test", f"<{n}.abc@mailer.drill.test>", State.SENDING, 0,
                   0.0, None, 0, None, time.time(), "123456")


def vendor(api: str, *behaviors: dict) -> FleetThread:
    return FleetThread(FleetSpec(vendors=[VendorSpec(name="v", api=api, behaviors=list(behaviors))]), control=False)


@pytest.mark.parametrize("api", APIS)
def test_success_reject_and_throttle_as_the_policy_sees_them(api: str) -> None:
    with vendor(api, {"kind": "reject", "reason": "policy", "match_rcpt": "^bad"},
                {"kind": "throttle", "rate_per_s": 0.01, "burst": 1}) as fleet:
        ep = ApiEndpoint("v", api, fleet["v"].base_url)
        clients = ApiClients(HARDENED)
        ok = clients.send(ep, message(1))
        rejected = clients.send(ep, message(2, "bad2@users.drill.test"))
        throttled = clients.send(ep, message(3))
        evs = api_events(fleet, "v")
    accepted = [(e["corr"], e["message_id"]) for e in evs if e["kind"] == "mta.message.accepted"]
    assert isinstance(ok, ApiAttempt) and ok.outcome is Outcome.SENT
    assert accepted == [("u1", ok.vendor_id)]  # the id the SDK returned is the one the vendor stored
    assert (rejected.outcome, throttled.outcome, throttled.code) == (Outcome.PERMFAIL, Outcome.TEMPFAIL, 429)
    replies = [e["http_status"] for e in evs if e["kind"] == "mta.reply.sent"]
    assert replies[1:] == [{"postmark": 422, "mailgun": 400, "resend": 422, "ses": 400}.get(api, 400), 429]
    # the vendors that say when to come back: SendGrid's X-RateLimit-Reset, Resend's and Mailgun's retry-after
    if api in ("sendgrid", "resend", "mailgun"):
        assert isinstance(throttled, ApiAttempt) and throttled.retry_after_s is not None
        assert 0 <= throttled.retry_after_s <= 101


@pytest.mark.parametrize("api", APIS)
def test_a_lost_response_is_an_unknown_outcome_and_resend_replays_on_the_key(api: str) -> None:
    with vendor(api, {"kind": "go_dark", "mode": "lose_response", "probability": 1.0}) as fleet:
        ep = ApiEndpoint("v", api, fleet["v"].base_url)
        clients = ApiClients(HARDENED)
        lost = clients.send(ep, message(1))
        fleet.set_behaviors("v", [])
        again = clients.send(ep, message(1))
        evs = api_events(fleet, "v")
    assert (lost.outcome, again.outcome) == (Outcome.UNKNOWN, Outcome.SENT)
    acks = [e["ack"] for e in evs if e["kind"] == "mta.message.accepted"]
    # with the idempotency key Resend replays the first response and stores nothing new; the others store twice
    assert acks == (["lost"] if api == "resend" else ["lost", "sent"])


def test_sdk_retries_left_on_boto3_sends_a_lost_response_again_by_itself() -> None:
    with vendor("ses", {"kind": "go_dark", "mode": "lose_response", "probability": 0.5}) as fleet:
        ep = ApiEndpoint("v", "ses", fleet["v"].base_url)
        clients = ApiClients(SdkOptions(timeout_s=5.0, sdk_retries=True, idempotency_key=False))
        results = [clients.send(ep, message(n)) for n in range(1, 21)]
        evs = api_events(fleet, "v")
    accepted = [e["corr"] for e in evs if e["kind"] == "mta.message.accepted"]
    assert {r.outcome for r in results} <= {Outcome.SENT, Outcome.UNKNOWN}
    assert len(accepted) > 20 and set(accepted) == {f"u{n}" for n in range(1, 21)}  # duplicates, by the SDK


def test_a_missing_sdk_is_a_clear_error_naming_the_extra() -> None:
    """The mailer started with --transport sendgrid where the sendgrid package cannot be imported: exit 2."""
    program = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sendgrid': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from maildrill.examples.mailer.service import main\n"
        "sys.exit(main(['--transport', 'sendgrid', '--primary', 'primary']))\n"
    )
    env = {**os.environ, "MAILDRILL_API_PRIMARY_URL": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--transport sendgrid needs the 'sendgrid' SDK" in proc.stderr
    assert "pip install 'maildrill[api]'" in proc.stderr


def test_an_api_vendor_not_in_the_environment_names_the_variable_and_the_vendors_there() -> None:
    env = {**os.environ, "MAILDRILL_API_BACKUP_URL": "http://127.0.0.1:9"}
    env.pop("MAILDRILL_API_PRIMARY_URL", None)
    proc = subprocess.run([sys.executable, "-m", "maildrill.examples.mailer", "--transport", "ses", "--primary",
                           "primary"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "mailer: --primary primary: MAILDRILL_API_PRIMARY_URL is not set; API vendors in the environment: "
        "['backup']. Name a vendor of the scenario, or set MAILDRILL_API_PRIMARY_URL to its base URL.")
