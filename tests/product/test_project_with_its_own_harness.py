"""A user's project that has its own `harness/` and `fake_mta/` packages (common names for a test harness): its
own tests import them, and maildrill's plugin (loaded as `maildrill.harness.pytest_plugin`) still gives its
fixtures. Run in a subprocess, as `python -m pytest` in that project runs. The same check against the built wheel
in a fresh virtualenv is `make test-wheel` (tests/product/check_wheel.sh)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_own_harness_and_fake_mta_packages_and_maildrills_fixtures(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("harness").joinpath("__init__.py").write_text("def project_name():\n    return 'shop'\n")
    pytester.mkpydir("fake_mta").joinpath("__init__.py").write_text("RELAY = 'relay.shop.test'\n")
    pytester.makepyfile(test_own="""
        import fake_mta
        import harness

        def test_the_projects_own_packages_are_the_ones_imported():
            assert harness.project_name() == "shop"
            assert fake_mta.RELAY == "relay.shop.test"
    """, test_mail="""
        import smtplib
        import maildrill

        def test_fake_mta_and_mail_events(make_fake_mta, mail_events):
            mta = make_fake_mta(behaviors=[{"kind": "reject", "reason": "unknown_user"}])
            try:
                with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
                    s.sendmail("app@shop.test", ["u000001@users.drill.test"], "Subject: hi\\r\\n\\r\\nx")
            except smtplib.SMTPRecipientsRefused as exc:
                assert exc.recipients["u000001@users.drill.test"][0] == 550
            maildrill.assert_no_5xx_retried(mail_events)
            replies = [e for e in mail_events.events() if e.kind == "mta.reply.sent"]
            rcpt = [(e["code"], e.corr) for e in replies if e["verb"] == "RCPT"]
            assert rcpt == [(550, "u000001")]
    """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "Error while loading plugin" not in result.stderr.str()
