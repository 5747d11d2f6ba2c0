"""The one deadline-bounded wait, sync and async."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from maildrill.polling import poll_until, poll_until_async


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert poll_until(lambda: (n := next(calls)) >= 3 and n, 30.0, interval_s=0.001) == 3


def test_times_out_with_the_error_it_is_given_or_one_naming_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match=r"^timed out after 0.05 s waiting for the moon$"):
        poll_until(lambda: False, 0.05, what="the moon", interval_s=0.01)
    with pytest.raises(LookupError, match="gone"):
        poll_until(lambda: None, 0.0, error=lambda: LookupError("gone"))


def test_an_exception_from_the_condition_ends_the_wait_at_once() -> None:
    def died() -> bool:
        raise ChildProcessError("exited with code 3")

    with pytest.raises(ChildProcessError):
        poll_until(died, 60.0)


def test_async_accepts_plain_and_coroutine_conditions() -> None:
    calls = itertools.count(1)

    async def ready() -> int | None:
        n = next(calls)
        return n if n >= 2 else None

    async def main() -> tuple[int, int]:
        a = await poll_until_async(ready, 30.0, interval_s=0.001)
        b = await poll_until_async(lambda: 7, 30.0)
        with pytest.raises(TimeoutError, match="waiting for condition"):
            await poll_until_async(lambda: 0, 0.02, interval_s=0.005)
        return a, b

    assert asyncio.run(main()) == (2, 7)


# Loops on the clock still written by hand, each with the reason it is not a `poll_until` call. A new one fails
# here (and so does one converted without being taken off the list).
HAND_WRITTEN = [
    # not a deadline wait: the Locust worker's own event loop (on gevent) until it has sent DONE, running
    # periodic jobs (clock resync pings, flushes) on the monotonic clock; it has no deadline to poll against
    "harness/load/locustfile.py:_worker_loop",
]


def _deadline_loops() -> list[str]:
    """Every `while` loop in the package (the example SUTs aside: they import nothing from maildrill) that
    reads the monotonic clock or a deadline, by file and enclosing function."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("maildrill.harness", "maildrill.fake_mta"):
        for path in sorted(Path(importlib.import_module(package).__path__[0]).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for scope in ast.walk(tree):
                if not isinstance(scope, ast.ClassDef | ast.Module):
                    continue
                for fn in scope.body:
                    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                        continue
                    loops = [n for n in ast.walk(fn) if isinstance(n, ast.While)]
                    if any("monotonic()" in ast.unparse(n) or "deadline" in ast.unparse(n) for n in loops):
                        owner = f"{scope.name}." if isinstance(scope, ast.ClassDef) else ""
                        found.append(f"{path.relative_to(root)}:{owner}{fn.name}")
    return sorted(found)


def test_every_other_deadline_wait_goes_through_poll_until() -> None:
    assert _deadline_loops() == sorted(HAND_WRITTEN)
