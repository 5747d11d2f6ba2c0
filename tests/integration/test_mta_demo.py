"""The standalone fleet demo (`make demo-fleet`) sends real mail and prints what each MTA replied."""

from __future__ import annotations

from pathlib import Path

import pytest
from maildrill.harness import demo_fleet


def test_demo_prints_what_each_behaviour_replied(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert demo_fleet.main(tmp_path / "events") == 0
    out = capsys.readouterr().out.splitlines()
    table = out[out.index("MTA           #  what the client saw") + 1:][:21]
    seen = {(row.split()[0], int(row.split()[1])): " ".join(row.split()[2:]) for row in table}
    assert len(seen) == 21
    assert [seen[("accepting", i)] for i in (1, 2)] == [
        "250 delivered to u000@users.drill.test", "250 delivered to u001@users.drill.test"]
    assert seen[("gmail", 3)] == "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of (+5 lines)"
    assert seen[("ses", 3)] == "454 Throttling failure: Maximum sending rate exceeded."
    assert seen[("postgrey", 1)].startswith("450 4.2.0 <u000@users.drill.test>: Recipient address rejected")
    assert seen[("unknown-user", 3)].startswith("550 5.1.1 <ghost002@users.drill.test>")
    assert [seen[("lose-ack", i)] for i in (1, 2, 3)] == ["connection closed without a reply"] * 3
    assert [seen[("blackhole", i)] for i in (1, 2, 3)] == [
        "250 delivered to u000@users.drill.test", "250 delivered to u001@users.drill.test",
        "250 delivered to ghost002@users.drill.test"]
    assert out[-1] == "stored but never acknowledged (a retry would duplicate them): ['u000', 'u001', 'ghost002']"
