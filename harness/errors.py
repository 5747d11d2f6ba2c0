"""The exception tree, and the exit code each branch maps to.

    MaildrillError                      (exit 3 unless a subclass says otherwise)
    ├── UsageError                      exit 2: bad flag, bad file, bad API call by the user
    │   ├── ScenarioError               a scenario/fleet/proxy config with problems (all of them, with paths)
    │   └── RemoteTargetRefused         a non-loopback address without --allow-remote
    └── InfrastructureError             exit 3: something maildrill needs did not work
        ├── AddressInUse                a listen address is taken
        ├── ToxiproxyUnreachable        a real Toxiproxy given by URL did not answer
        ├── SUTFailed                   the system under test did not start / become ready
        └── WaitTimeout                 a condition was not met before its deadline

A failed threshold is a verdict (exit 1), never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3


class MaildrillError(Exception):
    """Base of every error maildrill raises on purpose. `str(err)` is the message a user sees."""

    exit_code = EXIT_INFRA


class UsageError(MaildrillError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a user's input: where, what was given, why it is wrong, how to fix it."""

    path: str
    message: str
    value: object = None
    has_value: bool = False

    def __str__(self) -> str:
        if self.has_value:
            return f"{self.path} = {self.value!r}: {self.message}"
        return f"{self.path}: {self.message}"


class ScenarioError(UsageError):
    """Every problem of one input file at once."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class RemoteTargetRefused(UsageError):
    def __init__(self, what: str, address: str) -> None:
        super().__init__(
            f"{what} {address} is not on this machine (127.0.0.0/8 or ::1). maildrill sends load and "
            f"faults only to loopback unless you pass --allow-remote, and then only to systems you own."
        )


class InfrastructureError(MaildrillError):
    exit_code = EXIT_INFRA


class AddressInUse(InfrastructureError):
    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(
            f"{what}: {host}:{port} is already in use. Pick another port, or 0 to let the OS choose one."
        )


class ToxiproxyUnreachable(InfrastructureError):
    pass


class SUTFailed(InfrastructureError):
    pass


class WaitTimeout(InfrastructureError):
    pass
