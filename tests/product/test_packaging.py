"""pyproject.toml's package list is what the wheel ships: a package folder missing from it works in the editable
install (setuptools maps the folders) and is absent from the wheel. Fast; `make test-wheel` builds the real thing."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel_and_nothing_else() -> None:
    found = set()
    for package, folder in TOOL["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert sorted(TOOL["packages"]) == sorted(found)


def test_one_top_level_import_package() -> None:
    assert {p.split(".")[0] for p in TOOL["packages"]} == {"maildrill"}
    assert all(k == "maildrill" or k.startswith("maildrill.") for k in TOOL["package-dir"])

