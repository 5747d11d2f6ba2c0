"""Provider presets over real TCP: the banner, the verb each provider refuses at, and its exact wording."""

from __future__ import annotations

import pytest
from maildrill.fake_mta.clock import FakeClock
from maildrill.fake_mta.config import FleetSpec, MTASpec
from maildrill.fake_mta.testing import FleetThread, WireClient

GMAIL_RATE = [
    "421-4.7.28 [127.0.0.1] Our system has detected an unusual rate of",
    "421-4.7.28 unsolicited mail originating from your IP address. To protect our",
    "421-4.7.28 users from spam, mail sent from your IP address has been temporarily",
    "421-4.7.28 rate limited. Please visit",
    "421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to",
    "421 4.7.28 review our Bulk Email Senders Guidelines. a1b2c3d4e5f6 - gsmtp",
]
MICROSOFT = ["451 4.7.650 The mail server [127.0.0.1] has been temporarily rate limited due to IP reputation. "
             "For e-mail delivery information, see https://postmaster.live.com (S775)"]
YAHOO = ["421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints "
         "- 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"]
SES = ["454 Throttling failure: Maximum sending rate exceeded."]
POSTGREY = ["450 4.2.0 <u1@users.drill.test>: Recipient address rejected: Greylisted, see "
            "http://postgrey.schweikert.ch/help/users.drill.test.html"]
HARAKA = ["451 4.7.1 Greylisted. Please come back later."]

# preset, banner, the verb where its stress reply comes, that reply, whether the server then closes
CASES = [
    ("gmail", "220 mx.google.com ESMTP a1b2c3d4e5f6 - gsmtp", "MAIL", GMAIL_RATE, True),
    ("microsoft", "220 mx.outlook.example Microsoft ESMTP MAIL Service ready", "MAIL", MICROSOFT, False),
    ("yahoo", "220 mta7.am0.yahoodns.net ESMTP ready", "MAIL", YAHOO, True),
    ("ses", "220 email-smtp.us-east-1.amazonaws.com ESMTP SimpleEmailService-d-A1B2C3D4E5", "DATA", SES, False),
    ("postgrey", "220 mail.postgrey.test ESMTP Postfix", "RCPT", POSTGREY, False),
    ("haraka", "220 mx.haraka.test ESMTP Haraka/3.0.3 ready", "RCPT", HARAKA, False),
]
STEPS = [("MAIL", "MAIL FROM:<a@app.drill.test>"), ("RCPT", "RCPT TO:<u1@users.drill.test>"), ("DATA", "DATA")]


def _fire(preset: str, behaviors: list[dict[str, object]] | None = None) -> FleetThread:
    # burst 1 and a stopped clock: the first transaction passes, the second meets the stress reply
    if behaviors is None:
        kind = "greylist" if preset in ("postgrey", "haraka") else "throttle"
        behaviors = [{"kind": kind, "rate_per_s": 1, "burst": 1} if kind == "throttle" else {"kind": kind}]
    return FleetThread(FleetSpec(mtas=[MTASpec(name="m", preset=preset, behaviors=behaviors)]),
                       clock=FakeClock(), control=False)


@pytest.mark.parametrize(("preset", "banner", "verb", "reply", "closes"), CASES, ids=[c[0] for c in CASES])
def test_preset_banner_verb_and_wording(preset: str, banner: str, verb: str, reply: list[str], closes: bool):
    greylists = preset in ("postgrey", "haraka")
    with _fire(preset) as fleet, WireClient(fleet["m"].port) as c:
        assert c.reply() == [banner]
        assert c.cmd("EHLO app.drill.test")[0] == f"250-{banner.split()[1]}"
        if not greylists:  # spend the one token
            for _, line in STEPS:
                c.cmd(line)
            assert c.cmd(b"Subject: x\r\n\r\nhi\r\n.") == ["250 OK"]
        for step, line in STEPS:
            got = c.cmd(line)
            if step == verb:
                assert got == reply
                break
            assert got == ["250 OK"]
        if closes:
            assert c.closed_by_server()
        else:
            assert c.cmd("NOOP") == ["250 OK"]
        ev = [e for e in fleet.events(kind="mta.reply.sent") if e["behavior"] != "default"]
    assert [(e["verb"], e["code"], e["closes"]) for e in ev] == [(verb, int(reply[0][:3]), closes)]


def test_presets_default_behaviours_come_from_the_persona():
    with FleetThread(FleetSpec(mtas=[MTASpec(name=p, preset=p) for p, *_ in CASES]), control=False) as fleet:
        got = {name: fleet[name].describe()["behaviors"] for name in fleet.fleet.mtas}
    def throttle(rate: float, burst: int, scope: str) -> list[dict[str, object]]:
        return [{"kind": "throttle", "probability": 1.0, "rate_per_s": rate, "burst": burst, "scope": scope,
                 "count": "accepted"}]

    def greylist(delay: float, window: float) -> list[dict[str, object]]:
        return [{"kind": "greylist", "probability": 1.0, "min_delay_s": delay, "retry_window_s": window,
                 "whitelist_s": 35 * 86400.0}]

    assert got == {
        "gmail": throttle(20.0, 40, "ip"),
        "microsoft": throttle(10.0, 20, "ip"),
        "yahoo": throttle(10.0, 20, "ip"),
        "ses": throttle(14.0, 14, "global"),
        "postgrey": greylist(300.0, 2 * 86400.0),
        "haraka": greylist(850.0, 25 * 3600.0),
    }


@pytest.mark.parametrize(("behavior", "command", "reply"), [
    ({"kind": "reject", "reason": "unknown_user"}, "RCPT TO:<nobody@gmail.test>", [
        "550-5.1.1 The email account that you tried to reach does not exist. Please try",
        "550-5.1.1 double-checking the recipient's email address for typos or",
        "550-5.1.1 unnecessary spaces. For more information, go to",
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1b2c3d4e5f6 - gsmtp"]),
    ({"kind": "tempfail", "code": 450}, "RCPT TO:<busy@gmail.test>", [
        "450-4.2.1 The user you are trying to contact is receiving mail at a rate that",
        "450 4.2.1 prevents additional messages from being delivered. a1b2c3d4e5f6 - gsmtp"]),
    ({"kind": "tempfail", "code": 452}, "RCPT TO:<full@gmail.test>", [
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct the",
        "452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp a1b2c3d4e5f6 - gsmtp"]),
    ({"kind": "tempfail", "code": 452, "reply": {"code": 452, "enhanced": "4.5.3", "text": "Too many recipients"}},
     "RCPT TO:<u1@gmail.test>", ["452 4.5.3 Too many recipients"]),
])
def test_explicit_behaviours_on_a_preset_speak_its_wording_unless_given_a_reply(behavior, command, reply):
    with _fire("gmail", [behavior]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<a@app.drill.test>")
        assert c.cmd(command) == reply
