"""The CLI's contract: help lists commands, errors map to exit codes with one clear message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from maildrill.harness.bundled import resolve_scenario
from maildrill.harness.cli import main
from maildrill.harness.errors import EXIT_USAGE, Problem, RemoteTargetRefused, ScenarioError
from maildrill.harness.netcheck import is_loopback_host, require_loopback, require_loopback_url
from maildrill.harness.scenario.loading import load_scenario


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


# --- the bundled drills, `init`, and the commands a pip user starts with ------------------------------------
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
NAMES = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


def test_help_lists_every_command(capsys):
    assert main([]) == EXIT_USAGE
    listed = capsys.readouterr().err
    for name in ("demo", "scenarios", "show", "init", "run", "validate", "mta", "proxy", "mailer"):
        assert re.search(rf"^    {name}(\s|$)", listed, re.M), name


def test_scenarios_lists_every_bundled_drill_with_its_description(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out.splitlines()
    width = max(map(len, NAMES))
    expected = [f"{name:<{width}}  {yaml.safe_load((SCENARIOS / f'{name}.yaml').read_text())['description']}"
                for name in NAMES]
    assert out == [*expected, "", f"{len(NAMES)} drills. `maildrill show NAME` prints one; `maildrill run NAME` "
                   "runs it; `maildrill init` writes a starter drill for your own app."]


def test_show_prints_the_bundled_file_and_refuses_an_unknown_name(capsys):
    assert main(["show", "throttle-421-storm"]) == 0
    assert capsys.readouterr().out == (SCENARIOS / "throttle-421-storm.yaml").read_text()
    assert main(["show", "throttle-storm"]) == EXIT_USAGE
    assert capsys.readouterr().err == (f"maildrill show: no bundled drill named 'throttle-storm'; bundled drills: "
                                       f"{', '.join(NAMES)}\n")


def test_run_reads_a_file_first_then_a_bundled_drill_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_scenario("throttle-421-storm") == SCENARIOS / "throttle-421-storm.yaml"
    assert resolve_scenario("throttle-421-storm.yaml") == SCENARIOS / "throttle-421-storm.yaml"
    (tmp_path / "throttle-421-storm.yaml").write_text("version: 1\n")  # the user's own file wins
    assert resolve_scenario("throttle-421-storm.yaml") == Path("throttle-421-storm.yaml")
    assert resolve_scenario("throttle-421-storm") == SCENARIOS / "throttle-421-storm.yaml"
    (tmp_path / "sub").mkdir()
    for arg, why in [("no-such-drill", "no such file"), ("sub/throttle-421-storm", "no such file"),
                     ("sub", "is a directory, not a scenario file")]:
        with pytest.raises(ScenarioError) as err:
            resolve_scenario(arg)
        assert str(err.value) == (f"{arg}: 1 problem\n  (file): {why}, and no bundled drill has that name; bundled "
                                  f"drills (`maildrill scenarios`): {', '.join(NAMES)}")


def test_run_of_neither_a_file_nor_a_bundled_name_exits_2_listing_the_names(capsys):
    assert main(["run", "no-such-drill"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("maildrill run: no-such-drill: 1 problem\n  (file): no such file, and no bundled drill")
    assert err.rstrip().endswith(", ".join(NAMES))


def test_init_writes_a_starter_drill_that_validates_and_a_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert capsys.readouterr().out == ("wrote drills/my-app.yaml (a starter drill: edit `sut:` to start your app) "
                                       "and drills/README.md\n"
                                       "next: maildrill validate drills/my-app.yaml  &&  "
                                       "maildrill run drills/my-app.yaml\n")
    assert sorted(p.name for p in (tmp_path / "drills").iterdir()) == ["README.md", "my-app.yaml"]
    assert main(["validate", "drills/my-app.yaml"]) == 0
    assert capsys.readouterr().out == "drills/my-app.yaml: ok — my-app, 30 s load, 1 MTA(s), 2 timeline action(s)\n"
    s = load_scenario("drills/my-app.yaml")
    assert s.sut is not None and s.sut.command == ["python", "-m", "maildrill.examples.mailer", "--profile", "hardened"]
    assert [c.name for c in s.load.classes] == ["otp", "password_reset"]
    assert set(s.thresholds) == {"otp_expired_ratio[otp]", "latency_p99_s[otp]", "duplicates",
                                 "permanent_failures_retried", "drain_s"}
    text = (tmp_path / "drills" / "my-app.yaml").read_text()
    for hint in ("MAILDRILL_SUT_PORT", "MAILDRILL_SMTP_HOST", "--sut-url", "url: http://127.0.0.1:8000"):
        assert hint in text, hint
    readme = (tmp_path / "drills" / "README.md").read_text()
    assert "maildrill run drills/my-app.yaml" in readme and "docs/scenarios.md" not in readme  # no dangling path
    assert "scenarios.md" in readme


def test_init_refuses_to_overwrite_and_names_what_is_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "drills").mkdir()
    (tmp_path / "drills" / "README.md").write_text("mine\n")
    assert main(["init"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("maildrill init: not overwriting drills/README.md; move them away or pick "
                                       "another DIR\n")
    assert [p.name for p in (tmp_path / "drills").iterdir()] == ["README.md"]  # nothing written, nothing lost
    assert (tmp_path / "drills" / "README.md").read_text() == "mine\n"
    assert main(["init", "elsewhere/ops", "--name", "checkout"]) == 0
    capsys.readouterr()
    assert load_scenario("elsewhere/ops/checkout.yaml").name == "checkout"
    assert main(["init", "elsewhere/ops", "--name", "checkout"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("maildrill init: not overwriting elsewhere/ops/checkout.yaml, "
                                       "elsewhere/ops/README.md; move them away or pick another DIR\n")
    assert main(["init", "--name", "has space"]) == EXIT_USAGE
    assert "--name 'has space': must be 1-63 letters" in capsys.readouterr().err


def test_mailer_is_the_reference_mailer_with_its_own_flags():
    got = subprocess.run([sys.executable, "-m", "maildrill", "mailer", "--help"], capture_output=True, text=True,
                         timeout=60, check=False)
    same = subprocess.run([sys.executable, "-m", "maildrill.examples.mailer", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (got.returncode, got.stdout) == (0, same.stdout)
    assert got.stdout.startswith("usage: python -m maildrill.examples.mailer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")}
    bad = subprocess.run([sys.executable, "-m", "maildrill", "mailer", "--profile", "naive"], capture_output=True,
                         text=True, timeout=60, check=False, env=env)
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", (
        "mailer: MAILDRILL_SMTP_PORT is not set: the mailer needs a relay. Run it from a maildrill drill, or set "
        "MAILDRILL_SMTP_HOST/MAILDRILL_SMTP_PORT to your SMTP relay.\n"))


def test_event_loop_is_uvloop_when_installed(monkeypatch):
    import asyncio

    from maildrill.harness import aio

    async def which() -> str:
        return aio.loop_name()

    assert aio.run(which()) == "uvloop"  # a regular dependency on Linux
    monkeypatch.setenv("MAILDRILL_EVENT_LOOP", "asyncio")
    assert aio.run(which()) == "asyncio"
    loop = asyncio.new_event_loop()
    try:
        assert aio.loop_name(loop) == "asyncio"
    finally:
        loop.close()
