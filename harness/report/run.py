"""A run directory, read back: manifest, resolved scenario, events (with what could not be read)."""

from __future__ import annotations

import dataclasses
import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildrill.harness.analysis import Analysis
from maildrill.harness.analysis.core import analyze_files
from maildrill.harness.errors import UsageError
from maildrill.harness.store import EventStore, ReadProblem
from maildrill.harness.verdict import Verdict, evaluate


@dataclass(frozen=True)
class RunInfo:
    path: Path
    run_id: str
    scenario_name: str
    description: str
    seed: int | None
    started_at: str | None
    ended_at: str | None
    status: str
    status_reason: str | None
    reproduce: str | None
    time_scale: float
    degraded: tuple[dict[str, Any], ...]
    manifest: dict[str, Any]
    scenario: dict[str, Any]


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc}); the run directory is damaged") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the {what} is not a JSON object; the run directory is damaged")
    return data


REPEAT_FILE = "repeat.json"  # in the combined directory of `maildrill run --repeat N` (see report.repeat)


def is_repeat_dir(path: str | Path) -> bool:
    return (Path(path) / REPEAT_FILE).is_file()


def read_run(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir)
    if not path.is_dir():
        raise UsageError(f"{path}: no such run directory (give a directory that `maildrill run` wrote, "
                         f"e.g. reports/<run-id>)")
    if is_repeat_dir(path) and not (path / "manifest.json").exists():
        raise UsageError(f"{path}: a repeat set (the combined directory of `maildrill run --repeat N`), not one run; "
                         f"give one of its member runs, named in its repeat.json, or open its report.html")
    if not (path / "events").is_dir() and not (path / "manifest.json").exists():
        raise UsageError(f"{path}: not a run directory (no manifest.json and no events/); give a directory that "
                         f"`maildrill run` wrote, e.g. reports/<run-id>")
    manifest = _load_json(path / "manifest.json", "run manifest")
    scenario = _load_json(path / "scenario.json", "resolved scenario")
    return RunInfo(
        path=path, run_id=str(manifest.get("run_id", path.name)),
        scenario_name=str(manifest.get("scenario") or scenario.get("name") or "?"),
        description=str(scenario.get("description") or ""),
        seed=manifest.get("seed", scenario.get("seed")), started_at=manifest.get("started_at"),
        ended_at=manifest.get("ended_at"), status=str(manifest.get("status", "completed")),
        status_reason=manifest.get("status_reason"), reproduce=manifest.get("reproduce"),
        time_scale=float(scenario.get("time_scale") or manifest.get("time_scale") or 1.0),
        degraded=tuple(manifest.get("degraded") or ()), manifest=manifest, scenario=scenario)


def analyse_run(run_dir: str | Path) -> tuple[RunInfo, Analysis, Verdict]:
    """Everything the reports need, from the run directory alone. Unreadable event lines are skipped and listed."""
    info = read_run(run_dir)
    store = EventStore(info.path / "events")
    # the run's own events give the time origin; everything else is streamed once, never held in memory
    run_files = [p for p in store.files() if p.name.startswith("run")]
    run_events = [e for e in store.read(run_files).events if e.source == "run"]
    problems: list[ReadProblem] = []
    # the analysis builds millions of small records and frees none until it ends: the cyclic collector would
    # walk them all again and again (a third of the time at 10 M events) to find no garbage
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        analysis = analyze_files(store.files(), info.scenario, run_events=run_events, problems=problems,
                                 again=lambda: store.records([]))
    finally:
        if was_enabled:
            gc.enable()
    skipped = tuple(f"events/{Path(p.file).name}:{p.line}: {p.message}" for p in problems)
    analysis = dataclasses.replace(analysis, skipped=skipped)
    thresholds = info.scenario.get("thresholds") or {}
    status = info.status if info.status in ("completed", "degraded", "failed", "interrupted") else "failed"
    verdict = evaluate(analysis, thresholds, run_status=status)
    return info, analysis, verdict
