"""A regression suite for a retry function, written only with maildrill's pytest fixtures and public API.

Run it with `pytest examples/ci`. The naive sender's tests are expected to fail (xfail, strict): they are
the bugs maildrill finds. Swap in your own `send_*` function to test yours.
"""

from __future__ import annotations

import contextlib

import pytest
from maildrill.examples.ci.sender import UnknownOutcome, send_hardened, send_naive

import maildrill

SENDERS = {"hardened": send_hardened, "naive": send_naive}


def _send(sender, mta, rcpt):
    with contextlib.suppress(Exception):  # giving up is allowed; what the MTA saw is what we check
        sender(mta.host, mta.port, rcpt)


@pytest.mark.parametrize("name", ["hardened", pytest.param("naive", marks=pytest.mark.xfail(
    strict=True, reason="the naive sender's three fixed 10 ms retries all land inside the throttle's 200 ms: "
                        "it gives up on a message a patient sender delivers"))])
def test_a_throttled_message_is_retried_and_delivered_once(name, make_fake_mta, mail_events):
    mta = make_fake_mta(behaviors=[{"kind": "throttle", "rate_per_s": 5, "burst": 1}])
    _send(SENDERS[name], mta, "u000001@users.drill.test")
    _send(SENDERS[name], mta, "u000002@users.drill.test")
    assert [e.corr for e in mta.accepted()] == ["u000001", "u000002"]
    maildrill.assert_no_duplicates(mail_events)


@pytest.mark.parametrize("name", ["hardened", "naive"])
def test_greylisting_is_waited_out(name, make_fake_mta, mail_events):
    mta = make_fake_mta(behaviors=[{"kind": "greylist", "min_delay_s": 0.005, "retry_window_s": 60}])
    _send(SENDERS[name], mta, "u000001@users.drill.test")
    assert [e.corr for e in mta.accepted()] == ["u000001"]


@pytest.mark.parametrize("name", ["hardened", pytest.param("naive", marks=pytest.mark.xfail(
    strict=True, reason="the naive sender retries a 550 (unknown user): the bug this suite catches"))])
def test_a_hard_bounce_is_never_retried(name, make_fake_mta, mail_events):
    mta = make_fake_mta(behaviors=[{"kind": "reject", "reason": "unknown_user"}])
    _send(SENDERS[name], mta, "u000001@users.drill.test")
    maildrill.assert_no_5xx_retried(mail_events)


@pytest.mark.parametrize("name", ["hardened", pytest.param("naive", marks=pytest.mark.xfail(
    strict=True, reason="the naive sender re-sends after a lost 250: the user gets the code twice"))])
def test_a_lost_250_does_not_become_a_duplicate(name, make_fake_mta, mail_events):
    mta = make_fake_mta(behaviors=[{"kind": "go_dark", "mode": "lose_ack"}])
    _send(SENDERS[name], mta, "u000001@users.drill.test")
    mta.set_behaviors([{"kind": "accept"}])
    _send(SENDERS[name], mta, "u000002@users.drill.test")
    maildrill.assert_no_duplicates(mail_events)


def test_the_hardened_sender_reports_an_unknown_outcome(make_fake_mta):
    mta = make_fake_mta(behaviors=[{"kind": "go_dark", "mode": "lose_ack"}])
    with pytest.raises(UnknownOutcome):
        send_hardened(mta.host, mta.port, "u000001@users.drill.test")
