"""The run directory ``reports/<run-id>/``: resolved scenario, manifest, and where every part writes."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from maildrill.harness.aio import loop_name
from maildrill.harness.scenario.models import Scenario

MANIFEST = "manifest.json"
_DEPENDENCIES = ("aiosmtpd", "locust", "pydantic", "PyYAML", "toxiproxy-python", "matplotlib", "gevent")


class RunStatus(StrEnum):
    RUNNING = "running"  # only while maildrill runs; the watchdog turns a leftover one into `interrupted`
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    DEGRADED = "degraded"


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def events(self) -> Path:
        return self.path / "events"

    @property
    def locust(self) -> Path:
        return self.path / "locust"

    @property
    def sut(self) -> Path:
        return self.path / "sut"

    @property
    def load(self) -> Path:
        return self.path / "load"

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST


def new_run_id(scenario: Scenario, seed: int, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{scenario.name}-s{seed}"


def create_run_dir(out: Path, scenario: Scenario, *, seed: int, scenario_file: str | None,
                   reproduce: list[str]) -> RunDir:
    """Make ``out/<run-id>/`` (a fresh name even when two runs start in the same second) and write the
    resolved scenario and a manifest with status ``running``."""
    out.mkdir(parents=True, exist_ok=True)
    base = new_run_id(scenario, seed)
    for n in range(1000):
        path = out / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"{out}: too many runs named {base}*")
    rd = RunDir(path)
    for sub in (rd.events, rd.locust, rd.sut, rd.load):
        sub.mkdir()
    resolved = {**scenario.to_plain(), "seed": seed}
    (path / "scenario.json").write_text(json.dumps(resolved, indent=2) + "\n", encoding="utf-8")
    (path / "scenario.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    manifest = {
        "schema": "maildrill.manifest", "version": 1, "run_id": path.name, "scenario": scenario.name,
        "scenario_file": scenario_file, "seed": seed, "time_scale": scenario.time_scale,
        "maildrill_version": _version("maildrill") or "0+unknown",
        "versions": {d: _version(d) for d in _DEPENDENCIES},
        "platform": platform.platform(), "python": sys.version.split()[0], "event_loop": loop_name(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "ended_at": None,
        "status": RunStatus.RUNNING.value, "status_reason": None,
        "reproduce": shlex.join(reproduce), "degraded": [], "pid": os.getpid(),
    }
    write_manifest(path, manifest)
    return rd


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic: a reader (or a kill -9 mid-write) never sees half a manifest."""
    tmp = run_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / MANIFEST)


def update_manifest(run_dir: Path, **changes: Any) -> dict[str, Any]:
    manifest = read_manifest(run_dir)
    manifest.update(changes)
    write_manifest(run_dir, manifest)
    return manifest
