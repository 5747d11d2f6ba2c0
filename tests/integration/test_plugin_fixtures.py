"""Written as a user writes tests: only the plugin's fixtures and `import maildrill`, no maildrill internals."""

from __future__ import annotations

import smtplib

import pytest

import maildrill

MSG = "Subject: Your code\r\n\r\n123456"


def send(host: str, port: int, rcpt: str) -> None:
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.sendmail("app@app.drill.test", [rcpt], MSG)


def test_fake_mta_accepts_and_records_every_message(fake_mta, mail_events) -> None:
    send(fake_mta.host, fake_mta.port, "u000001@users.drill.test")
    send(fake_mta.host, fake_mta.port, "u000002@users.drill.test")
    assert [(e.corr, e["ack"]) for e in fake_mta.accepted()] == [("u000001", "sent"), ("u000002", "sent")]
    mail_events.wait_for(lambda evs: sum(e.kind == "mta.connection.closed" for e in evs) == 2, 30)
    maildrill.assert_no_duplicates(mail_events)


def test_make_fake_mta_speaks_like_a_provider_and_changes_behaviour(make_fake_mta) -> None:
    gmail = make_fake_mta("gmail", preset="gmail", behaviors=[{"kind": "reject", "reason": "unknown_user"}])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(gmail.host, gmail.port, "nobody@users.drill.test")
    code, text = info.value.recipients["nobody@users.drill.test"]
    assert code == 550 and text.startswith(b"5.1.1 The email account that you tried to reach does not exist")
    gmail.set_behaviors([{"kind": "accept"}])
    send(gmail.host, gmail.port, "u000003@users.drill.test")
    assert [e.corr for e in gmail.accepted()] == ["u000003"]


def test_fault_proxy_sits_between_the_sender_and_the_mta(fake_mta, fault_proxy, mail_events) -> None:
    proxy = fault_proxy.proxy_for(fake_mta)
    send(proxy.listen_host, proxy.listen_port, "u000004@users.drill.test")
    fault_proxy.set_enabled(fake_mta.name, False)
    with pytest.raises(ConnectionRefusedError):
        send(proxy.listen_host, proxy.listen_port, "u000005@users.drill.test")
    fault_proxy.set_enabled(fake_mta.name, True)
    send(proxy.listen_host, proxy.listen_port, "u000006@users.drill.test")
    assert [e.corr for e in fake_mta.accepted()] == ["u000004", "u000006"]
    assert [e.kind for e in mail_events.events() if e.source == "proxy"] == [
        "proxy.created", "proxy.disabled", "proxy.enabled"]


def test_assertions_pass_and_fail_on_what_the_mta_saw(make_fake_mta, mail_events) -> None:
    mta = make_fake_mta(behaviors=[{"kind": "reject", "reason": "unknown_user"}])
    for _ in range(2):  # a sender that retries a hard bounce
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(mta.host, mta.port, "u000007@users.drill.test")
    with pytest.raises(AssertionError) as info:
        maildrill.assert_no_5xx_retried(mail_events)
    lines = str(info.value).splitlines()
    assert lines[0] == "permanent failures (5xx) retried: 1 message(s)"
    assert lines[1].startswith("  u000007: 5xx from mta at ") and "attempts: mta " in lines[1]
    assert lines[-1].startswith("reproduce: pytest tests/integration/test_plugin_fixtures.py::")
    maildrill.assert_no_duplicates(mail_events)


def test_drill_runs_an_in_python_scenario(drill) -> None:
    import socket

    with socket.socket() as s:  # the MTA is itself the SMTP target here, on a port chosen now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = drill({
        "version": 1, "name": "plugin-drill", "duration_s": 2, "drain_timeout_s": 5,
        "mtas": [{"name": "primary", "behaviors": [{"kind": "go_dark", "mode": "blackhole"}]}],
        "load": {"shape": {"kind": "burst", "count": 3}, "classes": [
            {"name": "otp", "ttl_s": 30, "smtp": {"host": "127.0.0.1", "port": port}}]},
        "thresholds": {"acknowledged_but_lost": {"max": 0}},
    }, f"mtas[0].port={port}")
    assert (result.exit_code, result.passed) == (1, False)
    assert result.metrics["messages_requested"] == 3
    assert result.metrics["acknowledged_but_lost"] == 3  # every 250 was a lie: the blackhole kept nothing
    assert result.summary["verdict"]["summary"][0] == "FAIL: 1 of 1 threshold failed"
