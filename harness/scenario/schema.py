"""The scenario format as JSON Schema (for editors: `maildrill schema > scenario.schema.json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maildrill.harness.scenario.models import Scenario

SCHEMA_FILE = Path(__file__).with_name("schema.json")
SCHEMA_ID = "https://maildrill.dev/schema/scenario-v1.json"


def json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(by_alias=True, mode="validation")
    schema.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "maildrill scenario, version 1", **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
