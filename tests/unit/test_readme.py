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


def test_the_bundled_drill_table_lists_exactly_the_drills_that_ship() -> None:
    import re

    from maildrill.harness.bundled import bundled_drills

    table = README.split("### Bundled drills", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M) == [
        "otp-launch-spike", "throttle-421-storm", "greylisting-wall", "vendor-outage-failover", "bounce-storm-5xx",
        "lost-acks-duplicates", "worker-crash-restart", "priority-lanes-backlog", "slow-network",
        "monthly-outage-rehearsal", "launch-incident-replay", "ci-retry-regression", "api-429-storm",
        "api-lost-responses", "api-vendor-hang", "api-vendor-outage-failover", "webhook-silence-failover",
        "postfix-greylist"]
    assert sorted(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M)) == [d.name for d in bundled_drills()]


def test_the_readme_speaks_to_a_pip_user_first_and_contributors_second() -> None:
    order = ["pip install maildrill", "maildrill demo", "maildrill init", "--sut-url", "## Contributing",
             "make test ", "make demo ", "make test-wheel"]
    at = [README.find(s) for s in order]
    assert -1 not in at, dict(zip(order, at, strict=True))
    assert at[:6] == sorted(at[:6]), dict(zip(order, at, strict=True))
    assert at[2] < README.find("make ")  # every make target comes after the pip user's first steps


def test_no_text_in_the_product_refers_to_documents_outside_the_repository() -> None:
    import re

    root = Path(__file__).resolve().parents[2]
    # the names are spelled out in pieces so that this file does not match itself
    outside = re.compile("|".join([r"\b(STYLE|REFERENCE|VENDORS)" + r"\.md", r"\.\./" + "shared",
                                   r"\b[Ss]eed" + r" 00\d", r"\bREFERENCE" + ":"]))
    files = [root / "README.md", root / "Dockerfile", root / "Makefile", root / "pyproject.toml"]
    for folder in ("docs", "harness", "fake_mta", "examples", "scenarios", "maildrill", "compose", "tests"):
        files += [p for p in (root / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".yml",
                                                                                         ".json", ".sh", ".html")]
    found = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if outside.search(line)]
    assert found == []
