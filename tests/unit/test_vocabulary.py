"""Each vocabulary is declared once; these tests hold the other places that name it to the declaration."""

from __future__ import annotations

from maildrill.fake_mta.config import PRESET_NAMES
from maildrill.fake_mta.presets import PRESETS


def test_the_preset_names_the_config_accepts_are_exactly_the_presets() -> None:
    assert tuple(PRESETS) == PRESET_NAMES
