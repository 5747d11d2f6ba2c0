"""Repeat runs: `maildrill run SCENARIO --repeat N` runs the drill N times (seeds seed, seed+1, ... or one seed),
each into its own run directory, and then builds the combined directory ``<run-id>-repeat/`` whose repeat.json
names the member runs and whose reports carry the stability verdict (stable pass, stable fail, flaky)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from maildrill.harness.errors import EXIT_INFRA
from maildrill.harness.report import write_repeat_reports
from maildrill.harness.report.repeat import add_member, repeat_record, write_record
from maildrill.harness.run.drill import RunOptions, reproduce_command, run_drill
from maildrill.harness.run.rundir import RunStatus, new_run_id
from maildrill.harness.scenario.models import Scenario

MAX_REPEAT = 1000


@dataclass(frozen=True)
class RepeatResult:
    combined: Path
    exit_code: int  # 0 stable pass; 1 stable fail or flaky; 3 a run failed or was interrupted (the rest not run)
    summary: list[str] = field(default_factory=list)
    members: tuple[Path, ...] = ()


def seeds_of(seed: int, repeat: int, *, same_seed: bool) -> list[int]:
    """The seed of each run: seed, seed+1, ... (each run draws differently), or `seed` every time."""
    return [seed if same_seed else seed + i for i in range(repeat)]


def _combined_dir(out: Path, scenario: Scenario, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base = f"{new_run_id(scenario, seed)}-repeat"
    for n in range(1000):
        path = out / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{out}: too many repeat sets named {base}*")


def repeat_command(options: RunOptions, seed: int, repeat: int, *, same_seed: bool) -> list[str]:
    return [*reproduce_command(options.scenario_file, seed, options), "--repeat", str(repeat),
            *(["--same-seed"] if same_seed else [])]


def run_repeats(scenario: Scenario, options: RunOptions, *, repeat: int, same_seed: bool = False,
                stream: TextIO | None = None) -> RepeatResult:
    """Run the drill `repeat` times in a row, then write the combined reports. A run that fails (infrastructure)
    or is interrupted stops the repeat: the combined reports then cover the runs made, and say so."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise ValueError(f"repeat must be 1 to {MAX_REPEAT}, got {repeat}")
    out = stream or sys.stdout
    seed = scenario.seed if options.seed is None else options.seed
    seeds = seeds_of(seed, repeat, same_seed=same_seed)
    combined = _combined_dir(options.out, scenario, seed)
    again = shlex.join(repeat_command(options, seed, repeat, same_seed=same_seed))
    record = repeat_record(repeat_id=combined.name, scenario=scenario.name, scenario_file=options.scenario_file,
                           runs_requested=repeat, same_seed=same_seed, seed=seed,
                           started_at=datetime.now(UTC).isoformat(timespec="seconds"), reproduce=again)
    write_record(combined, record)
    members: list[Path] = []
    stopped: str | None = None
    try:
        for i, s in enumerate(seeds):
            print(f"maildrill: repeat run {i + 1} of {repeat} (seed {s})", file=out, flush=True)
            result = run_drill(scenario, replace(options, seed=s))
            members.append(result.run_dir)
            add_member(combined, record, result.run_dir, s)
            for line in result.summary:
                print(f"  {line}", file=out)
            if result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
                why = result.reason or ""
                why = why if why.startswith(result.status.value) else f"{result.status.value}: {why}".rstrip(": ")
                stopped = f"run {i + 1} (seed {s}) {why}"
                break
    except KeyboardInterrupt:
        stopped = f"interrupted (Ctrl-C) after {len(members)} run(s)"
    record["stopped"] = stopped
    record["ended_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_record(combined, record)
    if not members:
        return RepeatResult(combined, EXIT_INFRA, [f"no run was made: {stopped}", f"combined directory: {combined}"])
    rs = write_repeat_reports(combined)
    lines = [f"repeat: {rs.stability.runs} run(s) of {scenario.name!r}, seeds "
             f"{', '.join(str(x) for x in rs.seeds)}", *rs.stability.summary_lines(),
             f"combined report: {combined / 'report.html'}", f"reproduce: {again}"]
    code = EXIT_INFRA if stopped else rs.stability.exit_code
    return RepeatResult(combined, code, lines, tuple(members))
