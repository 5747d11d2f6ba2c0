"""The README is part of the contract: its metric table is the registry, and its commands exist."""

from __future__ import annotations

from pathlib import Path

from maildrill.harness.analysis import METRICS
from maildrill.harness.cli import COMMANDS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_metric_is_defined_in_the_readme_exactly_as_the_registry_says() -> None:
    for m in METRICS.values():
        scopes = ", ".join(sorted(s for s in m.scopes if s != "run")) or "—"
        assert f"| `{m.name}` | {m.unit} | {scopes} | {m.description} |" in README, m.name


def test_every_maildrill_command_the_readme_shows_exists() -> None:
    import re

    shown = set(re.findall(r"^maildrill (\w+)", README, re.M))
    assert shown <= set(COMMANDS), shown - set(COMMANDS)
