"""The plugin as pytest loads it for a user: a failing assertion's message, and the sample CI suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_assertion_lists_the_messages_and_how_to_reproduce(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
        import smtplib
        import maildrill

        def test_sender_does_not_resend(make_fake_mta, mail_events):
            mta = make_fake_mta(behaviors=[{"kind": "go_dark", "mode": "lose_ack"}])
            for _ in range(2):  # a sender that tries again after the connection dropped
                try:
                    with smtplib.SMTP(mta.host, mta.port, timeout=5) as s:
                        s.sendmail("app@x.test", ["u000042@users.drill.test"], "Subject: hi\\r\\n\\r\\nx")
                except smtplib.SMTPServerDisconnected:
                    pass
            maildrill.assert_no_duplicates(mail_events)
    """)
    result = pytester.runpytest("-p", "no:randomly", "--maildrill-seed", "7")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: 1 duplicate deliveries: 1 message(s)",
        "*u000042: accepted 2 times: by mta at * s (250 lost), by mta at * s (250 lost)",
        "*reproduce: pytest test_user.py::test_sender_does_not_resend --maildrill-seed 7",
    ])


def test_the_sample_ci_suite_finds_the_naive_senders_bugs(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(ROOT)
    shutil.copy(ROOT / "examples" / "ci" / "test_sender.py", pytester.path / "test_sender.py")
    result = pytester.runpytest("-p", "no:randomly", "-rx", "test_sender.py")
    result.assert_outcomes(passed=6, xfailed=3)
    result.stdout.fnmatch_lines(["*XFAIL*naive*retries a 550*"])


def test_plugin_options_are_documented_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*maildrill*", "*--maildrill-seed*", "*--maildrill-keep-runs*", "*--toxiproxy-url*"])
