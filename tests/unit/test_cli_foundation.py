"""The CLI's contract: help lists commands, errors map to exit codes with one clear message."""

from __future__ import annotations

import pytest
from maildrill.harness.cli import main
from maildrill.harness.errors import EXIT_USAGE, Problem, RemoteTargetRefused, ScenarioError
from maildrill.harness.netcheck import is_loopback_host, require_loopback, require_loopback_url


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == EXIT_USAGE
    assert "usage: maildrill" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("maildrill ")


def test_scenario_error_lists_every_problem_with_its_path():
    err = ScenarioError("scenarios/otp-spike.yaml", [
        Problem("mtas[0].behaviors[0].window_s", "must be > 0 (seconds before a retry is accepted)", -5, True),
        Problem("timeline[2].proxy", "no such proxy; defined: ['primary']", "secondary", True),
    ])
    assert str(err) == (
        "scenarios/otp-spike.yaml: 2 problems\n"
        "  mtas[0].behaviors[0].window_s = -5: must be > 0 (seconds before a retry is accepted)\n"
        "  timeline[2].proxy = 'secondary': no such proxy; defined: ['primary']"
    )
    assert err.exit_code == EXIT_USAGE


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("10.0.0.1", False), ("192.168.1.10", False), ("8.8.8.8", False), ("", False),
])
def test_loopback_detection(host, expected):
    assert is_loopback_host(host) is expected


def test_remote_targets_are_refused_unless_allowed():
    with pytest.raises(RemoteTargetRefused) as err:
        require_loopback_url("SUT", "http://10.1.2.3:8000/")
    assert "--allow-remote" in str(err.value)
    assert err.value.exit_code == EXIT_USAGE
    require_loopback("SUT", "10.1.2.3", allow_remote=True)  # the user's explicit choice
    require_loopback_url("SUT", "http://127.0.0.1:8000/")
