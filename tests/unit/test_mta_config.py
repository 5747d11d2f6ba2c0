"""Fleet config validation (every problem with its path), reply rendering, presets' wording lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from maildrill.fake_mta.config import ConfigError, load_fleet_config, parse_behaviors, parse_fleet
from maildrill.fake_mta.reply import Reply, parse_status
from pydantic import ValidationError

BAD = """\
mtas:
  - name: primary
    preset: gmial
    corr_pattern: "^(?P<user>.+)@"
    behaviors:
      - {kind: greylist, min_delay_s: -5}
      - {kind: throttle, rate: 3}
      - {kind: nope}
      - {kind: greylist, min_delay_s: 600, retry_window_s: 60}
      - {kind: reject, at: mail, match_rcpt: "^vip"}
      - {kind: go_dark, mode: lose_ack, at: rcpt}
      - {kind: tempfail, reply: {code: 250, enhanced: "4.2.0"}}
      - {kind: accept, match_sender: "(unclosed"}
    timeline:
      - {at_s: 10, behaviors: []}
      - {at_s: 5, behaviors: [{kind: tarpit}]}
  - name: primary
    port: 99999
control: {hots: 0.0.0.0}
"""


def test_a_bad_fleet_config_lists_every_problem_with_its_path(tmp_path: Path):
    path = tmp_path / "fleet.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as err:
        load_fleet_config(path)
    assert str(err.value).splitlines() == [
        f"{path}: 15 problems",
        "  mtas[0].preset = 'gmial': unknown preset; choose one of ['gmail', 'haraka', 'microsoft', 'postgrey', "
        "'ses', 'yahoo']",
        "  mtas[0].behaviors[0].min_delay_s = -5: must be >= 0",
        "  mtas[0].behaviors[1].rate = 3: unknown key; remove it or check its spelling",
        "  mtas[0].behaviors[2]: unknown behaviour kind; choose one of ['accept', 'greylist', 'throttle', 'reject', "
        "'tempfail', 'go_dark', 'tarpit', 'webhook_pause']",
        "  mtas[0].behaviors[3]: retry_window_s (60) must be >= min_delay_s (600): a retry must be able to pass",
        "  mtas[0].behaviors[4]: match_rcpt needs at: rcpt, data or dot (no recipient is known at mail)",
        "  mtas[0].behaviors[5]: go_dark fires where its mode says (refuse/hang_banner: connect, drop_mid_data: data, "
        "hang_data/lose_ack/blackhole: dot); remove `at`",
        "  mtas[0].behaviors[6].reply: enhanced code 4.2.0 does not match reply class 250 (RFC 3463 §2)",
        "  mtas[0].behaviors[7].match_sender = '(unclosed': not a valid regular expression (missing ), unterminated "
        "subpattern at position 0)",
        "  mtas[0].corr_pattern = '^(?P<user>.+)@': needs a named group (?P<corr>...) that captures the correlation id",
        "  mtas[0].timeline[1].behaviors[0].delay_s: required; add it",
        "  mtas[1].port = 99999: must be <= 65535",
        "  control.hots = '0.0.0.0': unknown key; remove it or check its spelling",
        "  mtas[0].name = 'primary': MTA and vendor names must be unique",
        "  mtas[1].name = 'primary': MTA and vendor names must be unique",
    ]
    assert err.value.problems[1] == ("mtas[0].behaviors[0].min_delay_s", "= -5: must be >= 0")


def test_duplicate_names_and_unordered_timeline_are_reported_with_paths():
    with pytest.raises(ConfigError) as err:
        parse_fleet({"mtas": [{"name": "a", "timeline": [{"at_s": 5}, {"at_s": 1}]}, {"name": "a"}]}, source="x")
    assert err.value.problems == [
        ("mtas[0].timeline", "phases must be in time order; got at_s [5.0, 1.0]"),
        ("mtas[0].name", "= 'a': MTA and vendor names must be unique"),
        ("mtas[1].name", "= 'a': MTA and vendor names must be unique"),
    ]


@pytest.mark.parametrize(("text", "why"), [
    ("mtas: [\n  - name: a\n  bad", "not valid YAML"),
    ("- 1\n- 2\n", "must be a mapping with an `mtas` and/or `vendors` list, got list"),
    ("mtas: []\n", "a fleet needs at least one entry in `mtas` or `vendors`"),
])
def test_unreadable_or_empty_configs(tmp_path: Path, text: str, why: str):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_fleet_config(path)
    assert why in str(err.value)
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_fleet_config(tmp_path / "missing.yaml")


def test_parse_behaviors_and_defaults():
    specs = parse_behaviors([{"kind": "throttle", "rate_per_s": 20, "burst": 20, "at": "mail"},
                             {"kind": "go_dark", "mode": "refuse"}, {"kind": "accept"}])
    assert [s.kind for s in specs] == ["throttle", "go_dark", "accept"]
    assert specs[0].scope == "global"
    with pytest.raises(ValidationError):
        parse_behaviors([{"kind": "tarpit", "delay_s": -1}])
    with pytest.raises(ValidationError):
        parse_behaviors([{"kind": "tempfail", "code": 550}])


def test_reply_rendering_multiline_enhanced_templates_and_421_closes():
    r = Reply(550, "5.7.1", ("first", "second {rcpt}", "third {unknown} {"))
    assert r.wire({"rcpt": "u1@x.test"}) == (
        "550-5.7.1 first\r\n550-5.7.1 second u1@x.test\r\n550 5.7.1 third {unknown} {")
    assert Reply(454, None, ("Throttling failure",)).wire() == "454 Throttling failure"
    assert Reply(421, "4.4.5", ("busy",)).close is True
    assert Reply(451, "4.7.1", ("x",)).close is False
    assert parse_status("250-mx\r\n250-PIPELINING\r\n250 8BITMIME") == (250, None, "mx\nPIPELINING\n8BITMIME")
    assert parse_status("550-5.7.1 a\r\n550 5.7.1 b") == (550, "5.7.1", "a\nb")
    assert parse_status("garbage") == (0, None, "garbage")
