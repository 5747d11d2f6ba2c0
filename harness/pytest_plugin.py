"""maildrill's pytest plugin (registered through the `pytest11` entry point). Imports nothing heavy at top."""

from __future__ import annotations
