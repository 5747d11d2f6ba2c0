"""Scenario files: frozen models, loading with every problem reported, time scaling and the JSON Schema."""

from __future__ import annotations

from maildrill.harness.scenario.loading import load_scenario, parse_scenario, parse_scenario_text
from maildrill.harness.scenario.models import ActionSpec, ClassSpec, LoadSpec, Scenario, SUTSpec
from maildrill.harness.scenario.scaling import scaled
from maildrill.harness.scenario.schema import json_schema

__all__ = ["ActionSpec", "ClassSpec", "LoadSpec", "SUTSpec", "Scenario", "json_schema", "load_scenario",
           "parse_scenario", "parse_scenario_text", "scaled"]
