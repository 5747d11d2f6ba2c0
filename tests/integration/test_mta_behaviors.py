"""Every fake MTA behaviour over real TCP: whole reply lines, whether the connection closed, and what was recorded."""

from __future__ import annotations

import shutil
import smtplib
import socket
import time
from typing import Any

import pytest
from maildrill.fake_mta.clock import FakeClock
from maildrill.fake_mta.config import FleetSpec, MTASpec
from maildrill.fake_mta.testing import FleetThread, WireClient, without_times

MSG = b"Message-ID: <m1@app.drill.test>\r\nSubject: code\r\n\r\nyour code is 123456\r\n"
BANNER = ["220 m.mx.drill.test ESMTP maildrill"]
EHLO = ["250-m.mx.drill.test", "250-PIPELINING", "250-SIZE 10485760", "250 8BITMIME"]


def one(clock: FakeClock | None = None, seed: int = 0, **mta: Any) -> FleetThread:
    return FleetThread(FleetSpec(mtas=[MTASpec(name="m", **mta)]), clock=clock, seed=seed, control=False)


def R(conn: int, txn: int, verb: str, code: int, enhanced: str | None, text: str, *, corr: str | None = None,
      behavior: str = "default", closes: bool = False, mail_from: str | None = None, rcpt: str | None = None,
      **extra: Any) -> dict[str, Any]:
    return {"kind": "mta.reply.sent", "corr": corr, "conn": conn, "txn": txn, "verb": verb, "code": code,
            "enhanced": enhanced, "text": text, "behavior": behavior, "closes": closes, "mail_from": mail_from,
            "rcpt": rcpt, **extra}


def opened(conn: int) -> dict[str, Any]:
    return {"kind": "mta.connection.opened", "corr": None, "conn": conn, "peer": "127.0.0.1"}


def closed(conn: int, by: str, reason: str) -> dict[str, Any]:
    return {"kind": "mta.connection.closed", "corr": None, "conn": conn, "by": by, "reason": reason}


def session_events(fleet: FleetThread) -> list[dict[str, Any]]:
    return [e for e in without_times(fleet.events()) if not e["kind"].startswith("mta.listener")]


def wait_closed(fleet: FleetThread, n: int) -> list[dict[str, Any]]:
    fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" for e in evs) >= n, 30,
                   what=f"{n} closed connections")
    return session_events(fleet)


def test_accept_records_the_whole_dialogue_exactly():
    with one() as fleet:
        with smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
            refused = client.sendmail("noreply@app.drill.test", ["u1@users.drill.test", "u2@users.drill.test"], MSG)
        assert refused == {}
        evs = wait_closed(fleet, 1)
    rc = {"rcpt": "u1@users.drill.test", "rcpt_count": 2}
    sender = "noreply@app.drill.test"
    accepted = {"conn": 1, "txn": 1, "mail_from": sender, "size_bytes": len(MSG),
                "message_id": "m1@app.drill.test", "ack": "sent"}
    assert evs == [
        opened(1),
        R(1, 0, "CONNECT", 220, None, "m.mx.drill.test ESMTP maildrill"),
        R(1, 0, "EHLO", 250, None, "m.mx.drill.test\nPIPELINING\nSIZE 10485760\n8BITMIME"),
        R(1, 1, "MAIL", 250, None, "OK", mail_from=sender),
        R(1, 1, "RCPT", 250, None, "OK", corr="u1", mail_from=sender, rcpt="u1@users.drill.test"),
        R(1, 1, "RCPT", 250, None, "OK", corr="u2", mail_from=sender, rcpt="u2@users.drill.test"),
        R(1, 1, "DATA", 354, None, "End data with <CR><LF>.<CR><LF>", corr="u1", mail_from=sender, **rc),
        {"kind": "mta.message.accepted", "corr": "u1", **accepted, "rcpt": "u1@users.drill.test"},
        {"kind": "mta.message.accepted", "corr": "u2", **accepted, "rcpt": "u2@users.drill.test"},
        R(1, 1, "DOT", 250, None, "OK", corr="u1", mail_from=sender, **rc),
        R(1, 1, "QUIT", 221, None, "Bye"),
        closed(1, "client", "QUIT"),
    ]


def test_greylist_defers_early_retries_and_passes_after_min_delay():
    clock = FakeClock()
    with one(clock=clock, behaviors=[{"kind": "greylist", "min_delay_s": 300, "retry_window_s": 3600}]) as fleet:
        deferred = ["450 4.2.0 <u7@users.drill.test>: Recipient address rejected: Greylisted, see "
                    "http://postgrey.schweikert.ch/help/users.drill.test.html"]
        seen = []
        with WireClient(fleet["m"].port) as c:
            assert c.reply() == BANNER
            assert c.cmd("EHLO app.drill.test") == EHLO
            for advance in (0, 299, 1):  # first try, an early retry at 299 s, a retry at 300 s
                clock.advance(advance)
                assert c.cmd("MAIL FROM:<noreply@app.drill.test>") == ["250 OK"]
                seen.append(c.cmd("RCPT TO:<u7@users.drill.test>"))
                assert c.cmd("RSET") == ["250 OK"]
            # an early retry did not reset the first-seen time: 300 s after the *first* try passes
            assert seen == [deferred, deferred, ["250 OK"]]
            # whitelisted now: a new triplet is still greylisted, this one passes at once
            assert c.cmd("MAIL FROM:<noreply@app.drill.test>") == ["250 OK"]
            assert c.cmd("RCPT TO:<u7@users.drill.test>") == ["250 OK"]
            assert c.cmd("RCPT TO:<u8@users.drill.test>")[0].startswith("450 4.2.0 <u8@users.drill.test>")
        rcpts = [(e["code"], e["behavior"], e["corr"]) for e in fleet.events(kind="mta.reply.sent")
                 if e["verb"] == "RCPT"]
    assert rcpts == [(450, "greylist", "u7"), (450, "greylist", "u7"), (250, "default", "u7"),
                     (250, "default", "u7"), (450, "greylist", "u8")]


def test_greylist_haraka_style_and_a_too_late_retry_starts_over():
    clock = FakeClock()
    spec = {"kind": "greylist", "min_delay_s": 850, "retry_window_s": 90000, "style": "haraka"}
    with one(clock=clock, behaviors=[spec]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("HELO app.drill.test")
        got = []
        for advance in (0, 90001, 850):  # too late (past the window): starts over, then passes 850 s later
            clock.advance(advance)
            c.cmd("MAIL FROM:<a@app.drill.test>")
            got.append(c.cmd("RCPT TO:<u1@users.drill.test>"))
            c.cmd("RSET")
    haraka = ["451 4.7.1 Greylisted. Please come back later."]
    assert got == [haraka, haraka, ["250 OK"]]


def test_throttle_421_closes_the_connection_and_is_recorded():
    clock = FakeClock()
    with one(clock=clock, behaviors=[{"kind": "throttle", "rate_per_s": 1, "burst": 2}]) as fleet:
        port = fleet["m"].port
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", port) as client:
                assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
        with WireClient(port) as c:
            c.reply()
            c.cmd("EHLO app.drill.test")
            assert c.cmd("MAIL FROM:<a@app.drill.test>") == ["421 4.4.5 Server busy, try again later."]
            assert c.closed_by_server()
        clock.advance(1.0)  # one token back
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
        evs = wait_closed(fleet, 4)
    third = [e for e in evs if e.get("conn") == 3]
    assert third == [
        opened(3),
        R(3, 0, "CONNECT", 220, None, "m.mx.drill.test ESMTP maildrill"),
        R(3, 0, "EHLO", 250, None, "m.mx.drill.test\nPIPELINING\nSIZE 10485760\n8BITMIME"),
        R(3, 1, "MAIL", 421, "4.4.5", "Server busy, try again later.", behavior="throttle", closes=True,
          mail_from="a@app.drill.test"),
        closed(3, "server", "421 4.4.5 reply (RFC 5321 §3.8)"),
    ]
    assert [e["ack"] for e in evs if e["kind"] == "mta.message.accepted"] == ["sent", "sent", "sent"]


def test_throttle_per_connection_scope_gets_a_fresh_bucket_per_connection():
    clock = FakeClock()
    spec = {"kind": "throttle", "rate_per_s": 0.001, "burst": 1, "scope": "connection",
            "reply": {"code": 451, "enhanced": "4.7.1", "text": "slow down"}}
    with one(clock=clock, behaviors=[spec]) as fleet:
        for _ in range(2):
            with WireClient(fleet["m"].port) as c:
                c.reply()
                c.cmd("EHLO x")
                assert c.cmd("MAIL FROM:<a@x.test>") == ["250 OK"]
                assert c.cmd("RSET") == ["250 OK"]
                assert c.cmd("MAIL FROM:<a@x.test>") == ["451 4.7.1 slow down"]
                assert c.cmd("NOOP") == ["250 OK"]  # a 451 does not close


def test_ses_throttles_at_data_with_454_and_drops_the_message():
    clock = FakeClock()
    with one(clock=clock, preset="ses", behaviors=[{"kind": "throttle", "rate_per_s": 1, "burst": 1}]) as fleet:
        with smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
            assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
            with pytest.raises(smtplib.SMTPDataError) as err:
                client.sendmail("a@app.drill.test", ["u2@users.drill.test"], MSG)
            assert (err.value.smtp_code, err.value.smtp_error) == (454, b"Throttling failure: Maximum sending rate "
                                                                        b"exceeded.")
            assert client.noop() == (250, b"OK")  # 454 leaves the connection open
        evs = wait_closed(fleet, 1)
    assert [(e["corr"], e["ack"]) for e in evs if e["kind"] == "mta.message.accepted"] == [("u1", "sent")]
    data = [e for e in evs if e["kind"] == "mta.reply.sent" and e["verb"] == "DATA"]
    assert [(e["code"], e["corr"], e["behavior"], e["closes"]) for e in data] == [
        (354, "u1", "default", False), (454, "u2", "throttle", False)]


@pytest.mark.parametrize(("reason", "setup", "command", "expected"), [
    ("unknown_user", ["MAIL FROM:<a@x.test>"], "RCPT TO:<nobody@users.drill.test>",
     ["550 5.1.1 <nobody@users.drill.test>: Recipient address rejected: User unknown in local recipient table"]),
    ("policy", ["MAIL FROM:<a@x.test>"], "RCPT TO:<u1@users.drill.test>",
     ["550 5.7.1 Message rejected by policy"]),
])
def test_reject_at_rcpt(reason: str, setup: list[str], command: str, expected: list[str]):
    with one(behaviors=[{"kind": "reject", "reason": reason}]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        for line in setup:
            assert c.cmd(line) == ["250 OK"]
        assert c.cmd(command) == expected
        assert c.cmd("DATA") == ["503 5.5.1 Error: need RCPT command"]


def test_reject_blocked_greets_with_554_then_serves_only_quit():
    with one(behaviors=[{"kind": "reject", "reason": "blocked"}]) as fleet, WireClient(fleet["m"].port) as c:
        assert c.reply() == ["554 5.7.0 Service unavailable; client host [127.0.0.1] blocked"]
        assert c.cmd("EHLO x") == ["503 5.5.1 Error: bad sequence of commands (the greeting refused service; "
                                   "send QUIT)"]
        assert c.cmd("QUIT") == ["221 Bye"]
        assert c.closed_by_server()


def test_auth_plain_and_login_with_fixed_credentials_and_reject_auth():
    auth = {"username": "drill", "password": "s3cret", "required": True}
    with one(auth=auth) as fleet:
        with smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
            client.ehlo("x")
            assert client.esmtp_features["auth"] == " PLAIN LOGIN"
            assert client.mail("a@x.test") == (530, b"5.7.0 Authentication required")
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                client.login("drill", "wrong")
            assert err.value.smtp_code == 535
            assert client.login("drill", "s3cret") == (235, b"2.7.0 Authentication successful")
            assert client.sendmail("a@x.test", ["u1@users.drill.test"], MSG) == {}
        with smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
            client.ehlo("x")
            client.user, client.password = "drill", "s3cret"
            assert client.auth("LOGIN", client.auth_login) == (235, b"2.7.0 Authentication successful")
    gmail = one(auth=auth, preset="gmail", behaviors=[{"kind": "reject", "reason": "auth"}])
    with gmail as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        assert c.cmd("AUTH PLAIN AGRyaWxsAHMzY3JldA==") == [
            "535-5.7.8 Username and Password not accepted. Learn more at",
            "535 5.7.8 https://support.google.com/mail/?p=BadCredentials a1b2c3d4e5f6 - gsmtp",
        ]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="STARTTLS needs `openssl` (absent)")
def test_starttls_with_a_self_generated_certificate():
    import ssl

    with one(starttls=True) as fleet, smtplib.SMTP("127.0.0.1", fleet["m"].port) as client:
        client.ehlo("x")
        assert client.has_extn("starttls")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        assert client.starttls(context=ctx)[0] == 220
        client.ehlo("x")
        assert not client.has_extn("starttls")
        assert client.sendmail("a@x.test", ["u1@users.drill.test"], MSG) == {}


@pytest.mark.parametrize(("code", "line"), [
    (450, "450 4.2.0 Requested mail action not taken: mailbox unavailable"),
    (451, "451 4.3.0 Requested action aborted: local error in processing"),
    (452, "452 4.3.1 Requested action not taken: insufficient system storage"),
])
def test_tempfail_codes_at_rcpt_and_at_a_chosen_verb(code: int, line: str):
    with one(behaviors=[{"kind": "tempfail", "code": code}]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<a@x.test>") == ["250 OK"]
        assert c.cmd("RCPT TO:<u1@users.drill.test>") == [line]
    with one(behaviors=[{"kind": "tempfail", "code": code, "at": "mail"}]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<a@x.test>") == [line]
        assert c.cmd("NOOP") == ["250 OK"]


def test_custom_multiline_reply_and_matching_rules():
    behaviors = [
        {"kind": "reject", "match_rcpt": r"^vip", "name": "vip-block",
         "reply": {"code": 550, "enhanced": "5.7.1", "text": ["first line", "second line"]}},
        {"kind": "tempfail", "match_sender": r"@spammy\.test$", "at": "rcpt"},
    ]
    with one(behaviors=behaviors) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<a@ok.test>")
        assert c.cmd("RCPT TO:<vip1@users.drill.test>") == ["550-5.7.1 first line", "550 5.7.1 second line"]
        assert c.cmd("RCPT TO:<u1@users.drill.test>") == ["250 OK"]
        c.cmd("RSET")
        c.cmd("MAIL FROM:<a@spammy.test>")
        assert c.cmd("RCPT TO:<u1@users.drill.test>") == [
            "451 4.3.0 Requested action aborted: local error in processing"]
        vip = [e for e in fleet.events(kind="mta.reply.sent") if e["code"] == 550]
    assert [(e["behavior"], e["text"], e["corr"]) for e in vip] == [("vip-block", "first line\nsecond line", "vip1")]


def test_probability_is_seeded_and_reproducible():
    def codes(seed: int) -> list[int]:
        with one(seed=seed, behaviors=[{"kind": "tempfail", "probability": 0.5}]) as fleet, \
                WireClient(fleet["m"].port) as c:
            c.reply()
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@x.test>")
            return [int(c.cmd(f"RCPT TO:<u{i}@users.drill.test>")[0][:3]) for i in range(40)]

    first, again, other = codes(7), codes(7), codes(8)
    assert first == again
    assert set(first) == {250, 451}
    assert first != other


def test_corr_from_a_verp_sender_at_mail():
    with one(behaviors=[{"kind": "tempfail", "at": "mail"}]) as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bounce+u42=users.drill.test@app.drill.test>")
        mail = [e for e in fleet.events(kind="mta.reply.sent") if e["verb"] == "MAIL"]
    assert [(e["corr"], e["code"]) for e in mail] == [("u42", 451)]


def test_pipelined_commands_get_replies_in_order():
    with one() as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        c.sock.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<u1@users.drill.test>\r\nRCPT TO:<u2@users.drill.test>\r\n"
                       b"DATA\r\n")
        assert [c.reply() for _ in range(4)] == [["250 OK"], ["250 OK"], ["250 OK"],
                                                 ["354 End data with <CR><LF>.<CR><LF>"]]
        assert c.cmd(b"Subject: x\r\n\r\nhi\r\n.") == ["250 OK"]


def test_tarpit_delays_the_banner():
    with one(behaviors=[{"kind": "tarpit", "delay_s": 0.4, "at": "connect"}]) as fleet:
        t0 = time.monotonic()
        with WireClient(fleet["m"].port) as c:
            assert c.reply() == BANNER
        assert time.monotonic() - t0 >= 0.4
        assert c.sock.fileno() == -1


def test_tarpit_at_the_dot_stores_first_and_a_client_that_gives_up_leaves_the_message_behind():
    """RFC 1047: the message is committed on the final dot; a slow 250 that the client never reads is a
    duplicate in the making."""
    with one(behaviors=[{"kind": "tarpit", "delay_s": 1.0, "at": "dot"}]) as fleet:
        with WireClient(fleet["m"].port) as c:
            c.reply()
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@x.test>")
            c.cmd("RCPT TO:<u1@users.drill.test>")
            c.cmd("DATA")
            c.sock.sendall(MSG + b".\r\n")
            fleet.wait_for(lambda evs: any(e["kind"] == "mta.message.accepted" for e in evs), 30,
                           what="the message stored before its 250")
        evs = wait_closed(fleet, 1)  # the client hung up inside the tarpit
    assert [e["kind"] for e in evs] == [
        "mta.connection.opened", "mta.reply.sent", "mta.reply.sent", "mta.reply.sent", "mta.reply.sent",
        "mta.reply.sent", "mta.message.accepted", "mta.message.ack_lost", "mta.connection.closed"]
    assert [e.get("verb") for e in evs if e["kind"] == "mta.reply.sent"] == ["CONNECT", "EHLO", "MAIL", "RCPT",
                                                                              "DATA"]
    assert (evs[6]["corr"], evs[6]["ack"], evs[-1]["by"]) == ("u1", "sent", "client")
    # the 250 was never sent: recorded as a lost ack, so a retry of it is counted as a duplicate after a lost ack
    assert evs[7] == {"kind": "mta.message.ack_lost", "corr": "u1", "conn": 1, "txn": 1, "rcpt": "u1@users.drill.test",
                      "reason": "the client was gone before the 250 was sent"}


def test_behaviour_changes_apply_to_open_connections():
    with one() as fleet, WireClient(fleet["m"].port) as c:
        c.reply()
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<a@x.test>") == ["250 OK"]
        fleet.set_behaviors("m", [{"kind": "tempfail", "code": 452}])
        assert c.cmd("RCPT TO:<u1@users.drill.test>") == [
            "452 4.3.1 Requested action not taken: insufficient system storage"]
        changed = fleet.events(kind="mta.behaviors.changed")
    assert [(e["behaviors"], e["by"]) for e in changed] == [
        ('[{"kind":"tempfail","probability":1.0,"code":452}]', "api")]


def test_a_connection_refused_while_another_mta_keeps_serving():
    spec = FleetSpec(mtas=[MTASpec(name="dark", behaviors=[{"kind": "go_dark", "mode": "refuse"}]),
                           MTASpec(name="ok")])
    with FleetThread(spec, control=False) as fleet:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", fleet["dark"].port), timeout=5)
        with smtplib.SMTP("127.0.0.1", fleet["ok"].port) as client:
            assert client.noop() == (250, b"OK")


def test_aiosmtpd_s_own_init_path_gives_the_same_dialogue(monkeypatch: pytest.MonkeyPatch):
    """The fast per-connection set-up is an optimisation for aiosmtpd 1.4.x; the fallback must agree."""
    import maildrill.fake_mta.session

    def dialogue() -> list[list[str]]:
        with one(auth={"username": "u", "password": "p"}) as fleet, WireClient(fleet["m"].port) as c:
            return [c.reply(), c.cmd("EHLO x"), c.cmd("AUTH PLAIN AHUAcA=="), c.cmd("MAIL FROM:<a@x.test>"),
                    c.cmd("RCPT TO:<u1@users.drill.test>"), c.cmd("DATA"), c.cmd(b"hi\r\n."), c.cmd("FOO")]

    fast = dialogue()
    monkeypatch.setattr(maildrill.fake_mta.session, "FAST_INIT", False)
    assert dialogue() == fast
    assert fast[2] == ["235 2.7.0 Authentication successful"]
    assert fast[6] == ["250 OK"]


def test_throttle_counting_attempts_keeps_a_hammering_sender_over_the_limit():
    """count: attempts — refused attempts cost a token too (down to a debt of `burst`), so a sender that
    retries at the rate the bucket refills never gets through, while one that pauses does."""
    clock = FakeClock()
    spec = {"kind": "throttle", "rate_per_s": 1, "burst": 2, "count": "attempts"}
    with one(clock=clock, behaviors=[spec]) as fleet:
        got = []
        for advance in (0, 0, 0, 0, 0, 1, 1, 1, 1, 4):  # 2 pass, 3 refused (debt -2), 1/s hammering, then a pause
            clock.advance(advance)
            with WireClient(fleet["m"].port) as c:
                c.reply()
                c.cmd("EHLO app.drill.test")
                got.append(c.cmd("MAIL FROM:<a@app.drill.test>")[0][:3])
    assert got == ["250", "250", "421", "421", "421", "421", "421", "421", "421", "250"]
