"""Helpers the end-to-end tests share: a scenario file from a text, `maildrill run` as a subprocess, the run
directory it writes, and the processes it must leave behind none of. Imported by the e2e test modules
(pytest puts this folder on sys.path), never collected itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from maildrill.harness.children import alive
from maildrill.harness.events import Event

from maildrill.polling import poll_until

ROOT = Path(__file__).resolve().parents[2]
SUT_APP = Path(__file__).with_name("sut_app.py")


def write_scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "drill.yaml"
    path.write_text(body.replace("SUT_APP", str(SUT_APP)))
    return path


def start_drill(scenario: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(out), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_dir_of(out: Path, timeout_s: float = 30) -> Path:
    def written() -> Path | None:
        dirs = [d for d in out.iterdir() if d.is_dir()] if out.exists() else []
        return dirs[0] if dirs and (dirs[0] / "manifest.json").exists() else None

    return poll_until(written, timeout_s, interval_s=0.05,
                      error=lambda: AssertionError(f"no run directory appeared in {out}"))


def manifest(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "manifest.json").read_text())


def child_pids(run_dir: Path) -> dict[str, tuple[int, int | None]]:
    out = {}
    for line in (run_dir / "pids.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["name"]] = (rec["pid"], rec["start_time"])
    return out


def assert_no_process_left(run_dir: Path, timeout_s: float = 10) -> None:
    pids = child_pids(run_dir)

    def left() -> dict[str, int]:
        return {n: p for n, (p, st) in pids.items() if alive(p, st)}

    poll_until(lambda: not left(), timeout_s, interval_s=0.05,
               error=lambda: AssertionError(f"processes left behind: {left()}"))


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.kind == kind]
