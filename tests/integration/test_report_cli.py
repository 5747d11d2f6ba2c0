"""maildrill report / compare / history as a user runs them: real subprocesses, exit codes, what they print."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_report_files import make_run

ROOT = Path(__file__).resolve().parents[2]


def maildrill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildrill", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_report_rebuilds_from_the_run_directory_and_exits_with_the_verdict(tmp_path: Path) -> None:
    failing = make_run(tmp_path)
    passing = make_run(tmp_path, "20261124-130000-demo-s1", thresholds={"delivered": {"min": 3}})
    got = maildrill("report", str(failing))
    assert got.returncode == 1, got.stderr
    assert got.stdout.splitlines()[:2] == ["FAIL: 2 of 3 thresholds failed", "  FAIL duplicates: 1 > max 0"]
    got = maildrill("report", str(passing))
    assert (got.returncode, got.stdout.splitlines()[0]) == (0, "PASS: 1 threshold met")
    assert json.loads((passing / "summary.json").read_text())["verdict"]["passed"] is True

    got = maildrill("compare", str(failing), str(passing), "--format", "json")
    assert got.returncode == 0, got.stderr
    rows = {r["metric"]: r for r in json.loads(got.stdout)["rows"]}
    assert (rows["verdict"]["a"], rows["verdict"]["b"]) == ("FAIL", "PASS")
    assert rows["duplicates"]["a"] == rows["duplicates"]["b"] == "1"

    got = maildrill("history", str(tmp_path))
    assert (got.returncode, got.stdout.strip()) == (0, f"history: {tmp_path / 'index.html'}")
    index = (tmp_path / "index.html").read_text()
    assert index.count("report.html") == 2


def test_report_on_something_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    got = maildrill("report", str(tmp_path / "nope"))
    assert got.returncode == 2
    assert got.stderr.strip().endswith("no such run directory (give a directory that `maildrill run` wrote, "
                                       "e.g. reports/<run-id>)")
    got = maildrill("compare", str(tmp_path), str(tmp_path))
    assert got.returncode == 2 and "not a run directory" in got.stderr


@pytest.mark.requires("chromium")
def test_the_report_renders_in_a_headless_browser_with_the_verdict_on_top(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    maildrill("report", str(run))
    shot = tmp_path / "shot.png"
    got = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                          "--window-size=1280,900", (run / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists() and shot.read_bytes().startswith(b"\x89PNG"), got.stderr
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (run / "report.html").as_uri()], capture_output=True, text=True, timeout=120, check=False)
    body = dom.stdout
    assert body.index("id=\"verdict\"") < body.index("<h2>") and "FAIL — demo" in body
