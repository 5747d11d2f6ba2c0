"""Each vocabulary is declared once (maildrill.vocabulary, maildrill.harness.metrics); these tests hold every
other place that names it — the code that writes and reads events, docs/events.md, the scenario model, the
behaviour registry, the fault proxy — to the declaration."""

from __future__ import annotations

import ast
import importlib
import re
import typing
from pathlib import Path

import pytest
from maildrill.fake_mta import behaviors, config
from maildrill.fake_mta.presets import PRESETS
from maildrill.harness.faults.toxics import ATTRIBUTES
from maildrill.harness.scenario.models import ToxicSpec

from maildrill.vocabulary import BEHAVIOR_KINDS, EVENT_KINDS, TOXIC_TYPES, EventKind

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("maildrill", "maildrill.harness", "maildrill.fake_mta", "maildrill.examples")
# A string that reads like an event kind: a component prefix and dotted lower-case words.
KIND_LIKE = re.compile(r"^(mta|proxy|load|sut|run|vendor|webhook)\.[a-z_]+(\.[a-z_]+)*$")
NOT_A_KIND = re.compile(r"\.(jsonl|json|ya?ml|py|html|md|test)$")  # file names and host names
KIND_PREFIX = re.compile(r"^(mta|proxy|load|sut|run|vendor|webhook)\.([a-z_]+\.)*$")  # f"mta.message.{x}"


def _sources() -> list[Path]:
    files: set[Path] = set()
    for name in PACKAGES:
        files.update(Path(importlib.import_module(name).__path__[0]).rglob("*.py"))
    return sorted(files)


def _kind_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in the module that reads like an event kind, and of every f-string that
    builds one (a kind built at run time cannot be checked: name the kinds)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if KIND_LIKE.match(node.value) and not NOT_A_KIND.search(node.value):
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and KIND_PREFIX.match(first.value):
                found.append((node.lineno, first.value + "{...}"))
    return found


def test_code_writes_and_reads_only_declared_event_kinds() -> None:
    undeclared = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
                  for path in _sources() for line, text in _kind_strings(path) if text not in EVENT_KINDS]
    assert undeclared == []


def test_the_scan_finds_an_undeclared_kind_and_a_built_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('rec.record("mta.reply.snet", None)\nif e.kind == f"mta.message.{x}": pass\n'
                   'open("events/mta.jsonl")\nrec.record("mta.reply.sent")\n')
    assert _kind_strings(bad) == [(1, "mta.reply.snet"), (2, "mta.message.{...}"), (4, "mta.reply.sent")]


def _names(text: str) -> set[str]:
    """The backticked field names in `text` outside parentheses (which hold values and notes)."""
    while True:
        inner = re.sub(r"\([^()]*\)", "", text)
        if inner == text:
            break
        text = inner
    return set(re.findall(r"`([a-z0-9_]+)`", text)) - {"t_s", "source", "kind", "corr"}


def _documented() -> dict[str, set[str]]:
    """kind -> fields, from the tables of docs/events.md: a `| kind | fields |` table names them in its second
    column; a `| kind | more fields |` table adds them to those the paragraph above it names."""
    out: dict[str, set[str]] = {}
    table: str | None = None
    paragraph = ""
    for line in (ROOT / "docs" / "events.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            table = None
            paragraph = "" if line.startswith("#") else f"{paragraph} {line}"
            continue
        if cells[0] == "kind":  # a table's header
            table = cells[1] if cells[1] in ("fields", "more fields") else None
            continue
        if table is None:
            continue
        kinds = re.findall(r"`([a-z_.]+)`", cells[0])
        if not kinds or not all("." in k for k in kinds):
            continue
        fields = _names(cells[1]) | (_names(paragraph) if table == "more fields" else set())
        for k in kinds:
            out[k] = fields
    return out


def test_docs_events_md_lists_every_declared_kind_with_exactly_its_fields() -> None:
    documented = _documented()
    declared = {k.value: set(k.fields) | set(k.optional) for k in EventKind}
    assert sorted(documented) == sorted(declared)
    assert {k: v for k, v in documented.items() if v != declared[k]} == {}


def test_the_memory_recorder_refuses_an_undeclared_kind_and_keeps_declared_ones_as_strings() -> None:
    from maildrill.fake_mta.recording import MemoryRecorder

    rec = MemoryRecorder("mta/primary")
    rec.record(EventKind.MTA_RESET, None, by="api")
    rec.record("mta.reset", None, by="timeline")
    with pytest.raises(ValueError, match=r"^undeclared event kind 'mta.rest': declare it, with its fields, in "):
        rec.record("mta.rest", None, by="api")
    assert [(type(e["kind"]), e["kind"], e["by"]) for e in rec.events] == [(str, "mta.reset", "api"),
                                                                            (str, "mta.reset", "timeline")]


def test_a_kind_declares_its_source_and_fields() -> None:
    assert EventKind("mta.message.ack_lost") is EventKind.MTA_MESSAGE_ACK_LOST
    assert EventKind.MTA_MESSAGE_ACK_LOST == "mta.message.ack_lost"
    assert EventKind.MTA_MESSAGE_ACK_LOST.source == "mta/<name>"
    assert EventKind.MTA_MESSAGE_ACK_LOST.fields == ("conn", "txn", "rcpt", "reason")
    assert EventKind.LOAD_STOPPED.optional == ("skipped_resends", "host", "clock_uncertainty_ms",
                                               "clock_worst_uncertainty_ms", "clock_drift_ms", "clock_pings",
                                               "clock_origin_s")
    assert all(k.value.split(".")[0] == k.source.split("/")[0] for k in EventKind)


def test_behaviour_kinds_match_the_spec_models_and_the_implementations() -> None:
    specs = typing.get_args(typing.get_args(config.BehaviorSpec)[0])
    assert tuple(typing.get_args(s.model_fields["kind"].annotation)[0] for s in specs) == BEHAVIOR_KINDS
    assert tuple(behaviors.REGISTRY) == BEHAVIOR_KINDS


def test_toxic_types_match_the_scenario_model_and_the_proxy() -> None:
    assert typing.get_args(ToxicSpec.model_fields["type"].annotation) == TOXIC_TYPES
    assert tuple(ATTRIBUTES) == TOXIC_TYPES


def test_the_preset_names_the_config_accepts_are_exactly_the_presets() -> None:
    assert tuple(PRESETS) == config.PRESET_NAMES
