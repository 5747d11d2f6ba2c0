"""tests/conftest.py's rule for outside components: a missing one skips with its fix, and fails when CI is set."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

USER_TESTS = """
import pytest

@pytest.mark.requires("chromium")
def test_needs_chromium():
    pass

def test_needs_redis(require_system):
    require_system("redis")

def test_needs_nothing():
    pass
"""


@pytest.fixture
def bare_path(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with no programs on it: every system component is missing."""
    empty = pytester.mkdir("empty-bin")
    monkeypatch.setenv("PATH", str(empty))
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_user=USER_TESTS)


@pytest.mark.usefixtures("bare_path")
def test_without_ci_a_missing_component_skips_with_its_fix(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.re_match_lines([
        r"SKIPPED \[1\] .*Chromium is not installed \(chromium not found\): apt-get install chromium "
        r"\(or make system-deps\)",
        r"SKIPPED \[1\] .*Redis is not installed \(redis-server not found\): apt-get install redis-server "
        r"\(or make system-deps\)",
    ], consecutive=False)


@pytest.mark.usefixtures("bare_path")
def test_with_ci_set_a_missing_component_fails(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # the marker fails in setup, the fixture in the test
    result.stdout.fnmatch_lines([
        "*CI is set, so a missing component is a failure, not a skip: Chromium is not installed*",
        "*CI is set, so a missing component is a failure, not a skip: Redis is not installed*",
    ], consecutive=False)

