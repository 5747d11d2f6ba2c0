"""Shared test mechanism: the outside components the suite may need, and whether their absence skips or fails.

`make system-deps` installs Postfix, Redis, Chromium and iproute2. A test that needs one says so with
`@pytest.mark.requires("postfix")` (or calls the `require_system` fixture, e.g. in a parametrised fixture).
Missing, the test skips with the reason and the fix; but when the environment variable `CI` is set (as CI
services set it) it FAILS instead, so a broken install step shows as red rather than as a quietly smaller
suite. Components CI cannot have here (a Docker engine, a Toxiproxy binary) are not listed: their tests
keep skipping with their reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SystemComponent:
    what: str  # for people: "Postfix"
    programs: tuple[str, ...]  # found on PATH, or at one of `paths`
    paths: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # Python packages it needs as well
    root: bool = False  # must run as root (a private Postfix master)
    install: str = ""

    def problem(self) -> str | None:
        """Why the component cannot be used here, with the fix; None when it can."""
        for program in self.programs:
            elsewhere = [Path(p) for p in self.paths if Path(p).name == program]  # e.g. /usr/sbin, off a user's PATH
            if shutil.which(program) is None and not any(p.exists() for p in elsewhere):
                return f"{self.what} is not installed ({program} not found): {self.install} (or make system-deps)"
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"the Python package {module!r} is not installed: pip install -e '.[dev]'"
        if self.root and os.geteuid() != 0:
            return f"{self.what} must be started as root here (run the tests under sudo)"
        return None


SYSTEM: dict[str, SystemComponent] = {
    "postfix": SystemComponent("Postfix", ("postfix",), paths=("/usr/sbin/postfix",), root=True,
                               install="apt-get install postfix"),
    "redis": SystemComponent("Redis", ("redis-server",), modules=("redis",), install="apt-get install redis-server"),
    "chromium": SystemComponent("Chromium", ("chromium",), install="apt-get install chromium"),
    "iproute2": SystemComponent("iproute2", ("ip",), root=True, install="apt-get install iproute2"),
}


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def check_system(name: str) -> None:
    """Skip (or, with CI set, fail) the current test when the system component `name` is missing."""
    if name not in SYSTEM:
        raise KeyError(f"unknown system component {name!r}; known: {sorted(SYSTEM)} (tests/conftest.py)")
    why = SYSTEM[name].problem()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"CI is set, so a missing component is a failure, not a skip: {why}", pytrace=False)
    pytest.skip(why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(name): needs a system component that `make system-deps` installs "
                                       f"({', '.join(sorted(SYSTEM))}); skips without it, fails when CI is set")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        for name in mark.args:
            check_system(name)


@pytest.fixture
def require_system() -> Callable[[str], None]:
    """`require_system("redis")` inside a test or fixture: the same rule as the `requires` marker."""
    return check_system
