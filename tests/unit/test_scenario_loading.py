"""Scenario files: the example loads as written; every mistake is reported at once, with its path; no crashes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maildrill.harness.errors import ScenarioError
from maildrill.harness.scenario import load_scenario, parse_scenario_text, scaled
from maildrill.harness.scenario.schema import SCHEMA_FILE, schema_text

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = """\
version: 1
name: otp-launch-spike
seed: 42
duration_s: 60            # load phase
drain_timeout_s: 120      # then wait up to this long for every requested message to be delivered
mtas:
  - name: primary
    behaviors:
      - {kind: throttle, rate_per_s: 20, burst: 20, at: mail}
  - name: backup
    preset: ses
proxies:
  - {name: primary, upstream: primary}      # SUT reaches MTA "primary" through this proxy
sut:
  command: ["python", "-m", "maildrill.examples.mailer", "--retry", "fixed:2"]
  ready: {http: /healthz, timeout_s: 20}
  env: {MAILER_WORKERS: "4"}
load:
  shape: {kind: spike, base_rps: 5, peak_rps: 100, start_s: 10, hold_s: 20}
  recipient: "{corr}@users.drill.test"
  classes:
    - name: otp
      weight: 1
      ttl_s: 30
      request: {method: POST, path: /otp, json: {email: "{recipient}"}}
timeline:
  - {at_s: 15, mta: primary, set: [{kind: go_dark, mode: refuse}]}
  - {at_s: 30, mta: primary, set: [{kind: accept}]}
  - {at_s: 20, proxy: primary, toxic: {type: latency, attributes: {latency: 500}}, for_s: 10}
thresholds:
  otp_expired_ratio: {max: 0.01}
  duplicates: {max: 0}
"""


def test_the_issue_example_loads_as_written() -> None:
    s = parse_scenario_text(EXAMPLE)
    assert (s.name, s.seed, s.duration_s, s.drain_timeout_s) == ("otp-launch-spike", 42, 60, 120)
    assert [m.name for m in s.mtas] == ["primary", "backup"]
    assert s.mtas[0].behaviors[0].kind == "throttle"
    assert s.proxy_for("primary") is not None and s.proxy_for("backup") is None
    assert [a.target for a in s.timeline] == ["mta/primary", "mta/primary", "proxy/primary"]
    assert s.timeline[2].toxic is not None and s.timeline[2].toxic.attributes == {"latency": 500}
    assert s.load.classes[0].request is not None and s.load.classes[0].request.json_ == {"email": "{recipient}"}
    # the plain form reads back to the same model
    assert parse_scenario_text(json.dumps(s.to_plain())) == s


BAD = """\
version: 1
name: broken
duration_s: -5
mtas:
  - name: primary
    behaviors:
      - {kind: greylist, min_delay_s: "soon"}
load:
  shape: {kind: constant, rps: 10}
  colour: blue
  classes:
    - {name: otp, request: {path: /otp}}
sut: {url: "http://127.0.0.1:8000"}
timeline:
  - {at_s: 1, mta: secondary, set: [{kind: accept}]}
thresholds:
  no_such_metric: {max: 1}
"""


def test_every_mistake_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(BAD, source="bad.yaml")
    paths = [p.path for p in info.value.problems]
    expected = ["duration_s", "mtas[0].behaviors[0].min_delay_s", "load.colour", "timeline[0].mta",
                "thresholds.no_such_metric"]
    assert sorted(paths) == sorted(expected)
    text = str(info.value)
    assert text.splitlines()[0] == f"bad.yaml: {len(expected)} problems"
    assert "  duration_s = -5: must be > 0 (line 3)" in text.splitlines()
    assert "  load.colour = 'blue': unknown key; remove it or check its spelling (see docs/scenarios.md) (line 10)" \
        in text.splitlines()
    assert "  timeline[0].mta = 'secondary': no such MTA; defined: ['primary'] (line 15)" in text.splitlines()


def test_cross_references() -> None:
    text = EXAMPLE.replace("{name: primary, upstream: primary}", "{name: primary, upstream: nowhere}")
    text = text.replace("proxy: primary, toxic", "proxy: other, toxic").replace("name: backup", "name: primary")
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text)
    assert [str(p) for p in info.value.problems] == [
        "mtas[1].name = 'primary': MTA names must be unique; rename this one (line 10)",
        "proxies[0].upstream = 'nowhere': no such MTA; defined: ['primary'] (line 13)",
        "timeline[2].proxy = 'other': no such proxy; defined: ['primary'] (line 29)",
    ]


def test_yaml_syntax_errors_give_line_and_column() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text("version: 1\nname: [unclosed\n", source="s.yaml")
    (problem,) = info.value.problems
    assert problem.path.startswith("line ")
    assert "not valid YAML" in problem.message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "42", "version: 2\n"])
def test_wrong_top_level(text: str) -> None:
    with pytest.raises(ScenarioError):
        parse_scenario_text(text)


def test_time_scale_multiplies_every_scenario_duration() -> None:
    s = parse_scenario_text(EXAMPLE.replace("seed: 42", "seed: 42\ntime_scale: 0.1"))
    r = scaled(s)
    assert (r.duration_s, r.drain_timeout_s, r.time_scale) == pytest.approx((6, 12, 1))
    shape = r.load.shape
    assert (shape.base_rps, shape.peak_rps, shape.start_s, shape.hold_s) == pytest.approx((50, 1000, 1, 2))
    assert [a.at_s for a in r.timeline] == pytest.approx([1.5, 3, 2])
    assert r.timeline[2].for_s == pytest.approx(1)
    assert r.timeline[2].toxic.attributes == pytest.approx({"latency": 50})
    assert r.mtas[0].behaviors[0].rate_per_s == pytest.approx(200)
    assert r.load.classes[0].ttl_s == pytest.approx(3)
    assert r.sut == s.sut  # readiness timeouts are infrastructure, not scenario time
    assert r.load.timeout_s == s.load.timeout_s


def test_published_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), \
        "regenerate: maildrill schema -o harness/scenario/schema.json"


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildrill", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_validate_cli_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE)
    proc = _run_cli("validate", str(good), str(bad))
    assert proc.returncode == 2
    assert proc.stdout.startswith(f"{good}: ok — otp-launch-spike, 60 s load, 2 MTA(s), 3 timeline action(s)")
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{bad}: ")
    assert {line.split(" ", 3)[2] for line in lines[1:]} >= {"duration_s", "mtas[0].behaviors[0].min_delay_s",
                                                              "load.colour", "timeline[0].mta"}
    assert "Traceback" not in proc.stderr


def test_every_bundled_scenario_validates() -> None:
    files = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / "docs").glob("examples/*.yaml"))
    for f in files:
        load_scenario(f)
    if files:
        proc = _run_cli("validate", *map(str, files))
        assert proc.returncode == 0, proc.stderr


def test_schema_cli_prints_the_schema() -> None:
    proc = _run_cli("schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["title"] == "maildrill scenario, version 1"


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_keys = st.sampled_from(["version", "name", "duration_s", "mtas", "load", "shape", "kind", "classes", "sut",
                         "timeline", "at_s", "mta", "set", "proxy", "toxic", "thresholds", "behaviors", "request",
                         "path", "json", "rps", "x"]) | st.text(max_size=6)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
                       max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(_keys, _values, max_size=8))
def test_garbage_structures_never_raise_anything_but_scenario_error(doc: dict[str, object]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        parse_scenario_text(text)
    except ScenarioError as exc:
        assert exc.problems and all(p.path for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300) | st.sampled_from(EXAMPLE.splitlines(keepends=True)).map(lambda s: s * 2).flatmap(
    lambda s: st.just(EXAMPLE.replace(s, "", 1) + s[::-1])))
def test_garbage_text_never_raises_anything_but_scenario_error(text: str) -> None:
    try:
        parse_scenario_text(text)
    except ScenarioError as exc:
        assert exc.problems


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "missing.yaml")
    assert "cannot read the file" in str(info.value)
    assert textwrap.dedent(str(info.value)).startswith(str(tmp_path / "missing.yaml"))


def test_set_overrides_apply_yaml_values_before_validation(tmp_path) -> None:
    from maildrill.harness.scenario.loading import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL_FOR_SET)
    s = load_scenario(path, ["load.shape.rps=7",
                             "sut.command=[python, -m, maildrill.examples.mailer, --profile, hardened]",
                             "mtas[0].behaviors[0].rate_per_s=3", "description=from --set"])
    assert s.load.shape.rps == 7
    assert list(s.sut.command) == ["python", "-m", "maildrill.examples.mailer", "--profile", "hardened"]
    assert s.mtas[0].behaviors[0].rate_per_s == 3
    assert s.description == "from --set"


def test_bad_set_overrides_are_all_reported(tmp_path) -> None:
    from maildrill.harness.errors import ScenarioError
    from maildrill.harness.scenario.loading import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(MINIMAL_FOR_SET)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, ["nonsense", "mtas[3].name=x", "duration_s.x=1", "load.shape.rps=-1"])
    assert str(info.value).splitlines()[1:] == [
        "  --set 'nonsense': expected PATH=VALUE, e.g. --set load.shape.peak_rps=50",
        "  --set mtas[3].name: mtas[3]: no such list item",
        "  --set duration_s.x: duration_s is not a mapping; cannot set 'x' in it",
    ]
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, ["load.shape.rps=-1"])
    assert str(info.value).splitlines()[1] == "  load.shape.rps = -1: must be >= 0 (line 9)"


MINIMAL_FOR_SET = """\
version: 1
name: set-test
duration_s: 5
mtas:
  - name: primary
    behaviors: [{kind: throttle, rate_per_s: 10, burst: 10}]
sut: {command: [python, -m, maildrill.examples.mailer]}
load:
  shape: {kind: constant, rps: 2}
  classes: [{name: otp, request: {method: POST, path: /otp, json: {email: "{recipient}"}}}]
"""
