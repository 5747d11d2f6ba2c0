"""maildrill: load-and-chaos drills for transactional email — the public API.

    import maildrill
    maildrill.assert_no_duplicates(mail_events)          # with the pytest plugin's fixtures
    scenario = maildrill.load_scenario("scenarios/ci-retry-regression.yaml")
    result = maildrill.run_drill(scenario, maildrill.RunOptions(quiet=True))

Everything is imported on first use, so `import maildrill` stays cheap. The implementation lives in
`harness` (drills, analysis, reports) and `fake_mta` (the fake MTAs, usable on their own).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # fake MTAs
    "FakeMTA": ".fake_mta.server", "Fleet": ".fake_mta.fleet", "FleetSpec": ".fake_mta.config",
    "MTASpec": ".fake_mta.config",
    # fault proxy
    "EmbeddedToxiproxy": ".harness.faults", "EmbeddedToxiproxyThread": ".harness.faults",
    "ToxiproxyAdapter": ".harness.faults",
    # scenarios and drills
    "load_scenario": ".harness.scenario", "parse_scenario_text": ".harness.scenario", "Scenario": ".harness.scenario",
    "run_drill": ".harness.run.drill", "RunOptions": ".harness.run.drill", "RunResult": ".harness.run.drill",
    # events, analysis, verdicts, reports
    "Event": ".harness.events", "EventStore": ".harness.store", "analyze": ".harness.analysis",
    "Analysis": ".harness.analysis", "METRICS": ".harness.analysis", "evaluate": ".harness.verdict",
    "Verdict": ".harness.verdict", "write_reports": ".harness.report",
    # assertions
    "assert_no_duplicates": ".harness.assertions", "assert_no_5xx_retried": ".harness.assertions",
    "assert_delivered_within": ".harness.assertions", "assert_backs_off_after_421": ".harness.assertions",
    # errors
    "MaildrillError": ".harness.errors", "UsageError": ".harness.errors", "ScenarioError": ".harness.errors",
    "InfrastructureError": ".harness.errors",
}

__all__ = [*sorted(_EXPORTS), "strategies"]


def __getattr__(name: str) -> Any:
    if name == "strategies":
        return importlib.import_module(".strategies", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maildrill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
