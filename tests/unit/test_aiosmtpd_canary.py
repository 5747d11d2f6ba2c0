"""The fake MTA subclasses aiosmtpd's SMTP and sets or overrides some of its private names (aiosmtpd 1.4 has
no public hook for a connect-time reply, closing after 421, or the end of DATA). This canary keeps that
coupling visible: the names are listed in `fake_mta/smtp_setup.py`, the list must match what fake_mta really
uses, and every name must still exist in the installed aiosmtpd — so an upgrade fails here, naming each
name to revisit, instead of misbehaving somewhere deep in a session."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import aiosmtpd
import aiosmtpd.smtp
from maildrill.fake_mta.smtp_setup import AIOSMTPD_PRIVATE_NAMES


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"  # `_` is a throwaway, not a name


def _aiosmtpd_private_names() -> set[str]:
    """Every single-underscore name aiosmtpd.smtp defines or uses: attributes, methods, classes, globals."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(aiosmtpd.smtp))):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return {n for n in names if _private(n)}


def _names_in_fake_mta() -> set[str]:
    names: set[str] = set()
    for path in Path(importlib.import_module("maildrill.fake_mta").__path__[0]).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declaration = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == "AIOSMTPD_PRIVATE_NAMES" for t in a.targets)
                       for n in ast.walk(a.value)}  # the list itself is not a use
        for node in ast.walk(tree):
            if id(node) in declaration:
                continue
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # getattr(module, "_Name")
    return {n for n in names if _private(n)}


def test_the_declared_list_is_exactly_the_private_aiosmtpd_names_fake_mta_uses() -> None:
    used = _names_in_fake_mta() & _aiosmtpd_private_names()
    assert sorted(used) == sorted(AIOSMTPD_PRIVATE_NAMES)


def test_every_private_name_still_exists_in_the_installed_aiosmtpd() -> None:
    missing = sorted(set(AIOSMTPD_PRIVATE_NAMES) - _aiosmtpd_private_names())
    assert missing == [], f"aiosmtpd {aiosmtpd.__version__} no longer has {missing}: revisit fake_mta/session.py " \
                          "and fake_mta/smtp_setup.py"


def test_the_installed_aiosmtpd_is_in_the_supported_range() -> None:
    assert aiosmtpd.__version__.startswith("1.4."), aiosmtpd.__version__
