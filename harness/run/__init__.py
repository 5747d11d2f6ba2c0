"""Running a drill: orchestrator, SUT lifecycle, timeline, run directory, live status, watchdog."""

from __future__ import annotations

from typing import Any

__all__ = ["Drill", "RunOptions", "RunResult", "RunStatus", "read_manifest", "run_drill"]


def __getattr__(name: str) -> Any:
    # lazy: submodules (children, sut) are imported by maildrill.harness.load and the watchdog without the orchestrator
    if name in ("Drill", "RunOptions", "RunResult", "run_drill"):
        from maildrill.harness.run import drill

        return getattr(drill, name)
    if name in ("RunStatus", "read_manifest"):
        from maildrill.harness.run import rundir

        return getattr(rundir, name)
    raise AttributeError(f"module 'maildrill.harness.run' has no attribute {name!r}")
