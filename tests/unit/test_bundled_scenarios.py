"""The drills shipped in scenarios/: each one validates, says what it rehearses and what a pass means."""

from __future__ import annotations

from pathlib import Path

import pytest
from maildrill.harness.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
BUNDLED = ["otp-launch-spike", "throttle-421-storm", "greylisting-wall", "vendor-outage-failover", "bounce-storm-5xx",
           "lost-acks-duplicates", "priority-lanes-backlog", "slow-network", "monthly-outage-rehearsal",
           "launch-incident-replay", "ci-retry-regression", "api-429-storm", "api-lost-responses", "api-vendor-hang",
           "api-vendor-outage-failover", "webhook-silence-failover"]


def test_every_named_drill_is_shipped() -> None:
    assert set(BUNDLED) <= {p.stem for p in SCENARIOS.glob("*.yaml")}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_scenario_is_valid_and_explains_itself(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("# "))
    text = " ".join(comment)
    assert comment[0].startswith(f"{path.stem} — "), "the comment opens with the drill's name"
    assert "A pass means" in text or "expected to FAIL" in text, "the comment says what a pass means"
    assert scenario.thresholds, "a drill without thresholds cannot fail"
    loopback = all(m.host in ("127.0.0.1", "localhost", "::1") for m in scenario.mtas)
    assert loopback


def test_ci_drill_fits_in_a_minute() -> None:
    s = load_scenario(SCENARIOS / "ci-retry-regression.yaml")
    assert s.duration_s * s.time_scale + s.drain_timeout_s * s.time_scale < 60
