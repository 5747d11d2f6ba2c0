"""A repeat set, read back: the combined directory of `maildrill run --repeat N` (its repeat.json names the member
run directories) and the members' own summaries → the stability verdict and the combined reports.

The combined directory holds only repeat.json and the reports built from the members, so `maildrill report` on
it rebuilds every member's reports from its events and then the combined ones from the members alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maildrill.harness.errors import UsageError
from maildrill.harness.metrics import HEADLINE, METRICS
from maildrill.harness.report.run import REPEAT_FILE, is_repeat_dir, read_run
from maildrill.harness.verdict import Check, Member, Spread, Stability, evaluate_repeats, statistic

SCHEMA = "maildrill.repeat"
VERSION = 1


def repeat_record(*, repeat_id: str, scenario: str, scenario_file: str | None, runs_requested: int, same_seed: bool,
                  seed: int, started_at: str, reproduce: str) -> dict[str, Any]:
    """A new repeat.json (no members yet); `add_member` appends each run as it ends."""
    return {"schema": SCHEMA, "version": VERSION, "repeat_id": repeat_id, "scenario": scenario,
            "scenario_file": scenario_file, "runs_requested": runs_requested, "same_seed": same_seed, "seed": seed,
            "started_at": started_at, "ended_at": None, "stopped": None, "reproduce": reproduce, "members": []}


def write_record(combined: Path, record: dict[str, Any]) -> None:
    """Atomic, so a kill mid-write leaves the previous record (every member that ended is named in it)."""
    tmp = combined / f".{REPEAT_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, combined / REPEAT_FILE)


def add_member(combined: Path, record: dict[str, Any], run_dir: Path, seed: int) -> None:
    record["members"].append({"run_id": run_dir.name, "path": os.path.relpath(run_dir, combined), "seed": seed})
    write_record(combined, record)


def read_record(combined: str | Path) -> dict[str, Any]:
    path = Path(combined) / REPEAT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{combined}: not a repeat directory (no {REPEAT_FILE})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the repeat record ({exc}); the directory is damaged") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("members"), list):
        raise UsageError(f"{path}: not a maildrill repeat record (schema {SCHEMA!r} with a members list expected)")
    if data.get("version") != VERSION:
        raise UsageError(f"{path}: repeat record version {data.get('version')!r}; this maildrill reads {VERSION}")
    return data


@dataclass(frozen=True)
class MemberRun:
    path: Path
    seed: int | None
    summary: dict[str, Any]  # the member's summary.json

    @property
    def run_id(self) -> str:
        return str(self.summary["run"]["run_id"])

    @property
    def passed(self) -> bool:
        return bool(self.summary["verdict"]["passed"])


@dataclass(frozen=True)
class RepeatSet:
    path: Path
    record: dict[str, Any]
    members: tuple[MemberRun, ...]
    thresholds: dict[str, dict[str, Any]]
    description: str
    stability: Stability

    @property
    def scenario_name(self) -> str:
        return str(self.record.get("scenario") or "?")

    @property
    def seeds(self) -> list[int | None]:
        return [m.seed for m in self.members]

    def spreads(self) -> dict[str, Spread]:
        """min / median / max across the runs of every headline metric (thresholded or not) the runs measured;
        nulls rank on the bad side of the metric (above for lower-is-better ones)."""
        out: dict[str, Spread] = {}
        for name in HEADLINE:
            values = [m.summary["metrics"].get(name) for m in self.members if name in m.summary.get("metrics", {})]
            if values and len(values) == len(self.members):
                high = METRICS[name].better != "higher"
                out[name] = Spread(*(statistic(s, values, nulls_high=high) for s in ("min", "median", "max")))
        return out


def read_member_summary(path: Path) -> dict[str, Any]:
    """A member run's summary.json (`maildrill.harness.report.write_repeat_reports` rebuilds it first when asked
    to, or when it is missing)."""
    summary = path / "summary.json"
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{summary}: cannot read the member's summary ({exc})") from None
    return data


def read_repeat(combined: str | Path, *,
                member_summary: Callable[[Path], dict[str, Any]] = read_member_summary) -> RepeatSet:
    """The repeat set from its record and its members' run directories (each member's summary from
    `member_summary`, called in member order once its directory is checked). A missing member is an error
    naming it."""
    path = Path(combined)
    record = read_record(path)
    members: list[MemberRun] = []
    thresholds: dict[str, dict[str, Any]] | None = None
    description = ""
    for entry in record["members"]:
        run_dir = path / str(entry.get("path") or entry.get("run_id"))
        if not run_dir.is_dir():
            raise UsageError(f"{path / REPEAT_FILE}: member run {entry.get('run_id')!r} is missing (looked in "
                             f"{run_dir}); the combined report is built from the member run directories")
        info = read_run(run_dir)
        own = dict(info.scenario.get("thresholds") or {})
        if thresholds is None:
            thresholds, description = own, info.description
        elif own != thresholds:
            raise UsageError(f"{run_dir}: its thresholds differ from the first member's; a repeat set is one scenario")
        summary = member_summary(run_dir)
        members.append(MemberRun(run_dir, entry.get("seed", info.seed), summary))
    thresholds = thresholds or {}
    stability = evaluate_repeats(thresholds, [_member(m) for m in members],
                                 runs_requested=int(record.get("runs_requested") or len(members)),
                                 stopped=record.get("stopped"))
    return RepeatSet(path, record, tuple(members), thresholds, description, stability)


def _member(m: MemberRun) -> Member:
    checks = tuple(Check(**c) for c in m.summary["verdict"]["checks"])
    return Member(m.run_id, m.seed, str(m.summary["run"]["status"]), checks)


__all__ = ["REPEAT_FILE", "RepeatSet", "add_member", "is_repeat_dir", "read_member_summary", "read_repeat",
           "repeat_record", "write_record"]
