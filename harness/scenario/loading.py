"""Reading a scenario file: YAML → frozen `Scenario`, every problem at once with its path, value, why and fix."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from maildrill.fake_mta.config import BEHAVIOR_KINDS, parse_behaviors, vendor_misfits
from maildrill.fake_mta.webhook_spec import LAG_DISTRIBUTIONS
from maildrill.harness.errors import Problem, ScenarioError
from maildrill.harness.metrics import METRICS
from maildrill.harness.scenario.models import SHAPE_KINDS, Scenario
from pydantic import ValidationError

_TAGS = set(BEHAVIOR_KINDS) | set(SHAPE_KINDS) | set(LAG_DISTRIBUTIONS)
_NO_VALUE = ("missing", "union_tag_not_found", "model_attributes_type", "model_type", "dict_type", "list_type")


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read and validate a scenario file. Raises ScenarioError listing every problem (with YAML line numbers).
    `overrides` are ``dotted.path=YAML value`` settings applied before validation (``maildrill run --set``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError(str(p), [Problem("(file)", f"cannot read the file ({why}); check the path")]) from None
    return parse_scenario_text(text, source=str(p), overrides=overrides)


def apply_overrides(data: Any, overrides: Sequence[str], *, source: str = "--set") -> Any:
    """``sut.command=["python", "-m", "app"]``, ``load.shape.peak_rps=50``, ``mtas[0].behaviors[0].rate_per_s=5``:
    the value is YAML; a missing mapping key is created, a list index must exist."""
    problems: list[Problem] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem(f"--set {item!r}", "expected PATH=VALUE, e.g. --set load.shape.peak_rps=50"))
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problems.append(Problem(f"--set {key}", f"the value {raw!r} is not valid YAML ({exc})"))
            continue
        steps = [int(s) if s.isdigit() else s for s in re.findall(r"[^.\[\]]+", key)]
        node = data
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    problems.append(Problem(f"--set {key}", f"{_dotted(steps[: i + 1])}: no such list item"))
                    break
            elif not isinstance(node, dict):
                problems.append(Problem(f"--set {key}",
                                        f"{_dotted(steps[:i])} is not a mapping; cannot set {step!r} in it"))
                break
            if last:
                node[step] = value
            elif isinstance(step, str) and step not in node:
                node = node.setdefault(step, {})
            else:
                node = node[step]
    if problems:
        raise ScenarioError(source, problems)
    return data


def _dotted(steps: Sequence[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def parse_scenario_text(text: str, *, source: str = "scenario", overrides: Sequence[str] = ()) -> Scenario:
    """Validate YAML (or JSON, which is YAML) text. Raises ScenarioError."""
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        what = exc.problem or exc.context or "syntax error"
        raise ScenarioError(source, [Problem(where, f"not valid YAML: {what}; fix the syntax there")]) from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise ScenarioError(source, [Problem("(file)", f"not valid YAML: {exc}")]) from None
    if overrides:
        if not isinstance(data, dict):
            raise ScenarioError(source, [Problem("(top level)", "must be a mapping to apply --set to")])
        data = apply_overrides(data, overrides, source=f"{source} (--set)")
    return parse_scenario(data, source=source, lines=lines)


def parse_scenario(data: Any, *, source: str = "scenario", lines: dict[str, int] | None = None) -> Scenario:
    """Validate plain data (e.g. from YAML or JSON). Raises ScenarioError listing every problem."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(source, [Problem("(top level)", f"must be a mapping with version: 1, name, duration_s, "
                                                            f"mtas and/or vendors, and load; got {got}")])
    problems: list[Problem] = []
    model: Scenario | None = None
    try:
        model = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc)
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # e.g. a self-referencing YAML anchor
        problems.append(Problem("(top level)", f"cannot be read as a scenario ({type(exc).__name__}: {exc})"))
    problems += _cross_problems(data)
    if problems:
        raise ScenarioError(source, _dedupe(_with_lines(problems, lines or {})))
    assert model is not None
    return model


# --- pydantic errors → Problems -----------------------------------------------------------------
def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # pydantic names the union member it tried (a discriminator tag, or a model in a smart union);
        # the user never wrote those
        if isinstance(item, str) and i > 0 and (item in _TAGS or item[:1].isupper() or "[" in item):
            continue
        if item in ("function-after", "function-before", "function-plain"):
            continue
        parts.append(f"[{item}]" if isinstance(item, int) else (f".{item}" if parts else str(item)))
    return "".join(parts) or "(top level)"


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        typ = err["type"]
        path = _path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        msg = msg.replace("Input should be", "must be", 1).replace("greater than or equal to", ">=")
        msg = msg.replace("less than or equal to", "<=").replace("greater than", ">").replace("less than", "<")
        if typ == "union_tag_invalid":
            tags = err.get("ctx", {}).get("expected_tags", "")
            msg = f"unknown kind; choose one of {tags}"
        elif typ == "union_tag_not_found":
            tags = err.get("ctx", {}).get("discriminator", "'kind'")
            msg = f"needs {tags}; see `maildrill schema` for the kinds"
        elif typ == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (see docs/scenarios.md)"
        elif typ == "missing":
            msg = "required; add it"
        elif typ == "literal_error" and path == "version":
            msg = "must be 1 (the only scenario format version this maildrill reads)"
        value = err.get("input")
        if typ in _NO_VALUE or not isinstance(value, str | int | float | bool) or value is None:
            out.append(Problem(path, msg))
        else:
            out.append(Problem(path, msg, value, True))
    return out


# --- cross-reference checks, on the raw data so they are reported together with type errors ---------------
def _items(data: dict[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    seq = data.get(key)
    if isinstance(seq, list):
        for i, item in enumerate(seq):
            if isinstance(item, dict):
                yield i, item


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _cross_problems(data: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    mtas = [(i, m.get("name", "mta")) for i, m in _items(data, "mtas")]
    mta_names: list[str] = []
    for i, n in mtas:
        if isinstance(n, str) and n in mta_names:
            out.append(Problem(f"mtas[{i}].name", "MTA names must be unique; rename this one", n, True))
        elif isinstance(n, str):
            mta_names.append(n)
    vendor_names: list[str] = []
    vendor_apis: dict[str, Any] = {}
    for i, v in _items(data, "vendors"):
        n = v.get("name", "vendor")
        if not isinstance(n, str):
            continue
        vendor_apis.setdefault(n, v.get("api"))
        if n in mta_names:
            out.append(Problem(f"vendors[{i}].name", "an MTA has this name; MTA and vendor names share one "
                               "namespace (events, proxies, thresholds): rename one", n, True))
        elif n in vendor_names:
            out.append(Problem(f"vendors[{i}].name", "vendor names must be unique; rename this one", n, True))
        else:
            vendor_names.append(n)
    receivers = mta_names + vendor_names
    proxies = list(_items(data, "proxies"))
    proxy_names: list[str] = []
    upstreams: list[str] = []
    for i, p in proxies:
        name, up = p.get("name"), p.get("upstream")
        if isinstance(name, str) and name in proxy_names:
            out.append(Problem(f"proxies[{i}].name", "proxy names must be unique; rename this one", name, True))
        elif isinstance(name, str):
            proxy_names.append(name)
        if isinstance(up, str):
            if up not in receivers:
                what = "no such MTA or vendor; " if vendor_names else "no such MTA; "
                out.append(Problem(f"proxies[{i}].upstream", what + _defined(mta_names, vendor_names), up, True))
            elif up in upstreams:
                what = "MTA" if up in mta_names else "vendor"
                out.append(Problem(f"proxies[{i}].upstream", f"this {what} already has a proxy; one proxy per {what}",
                                   up, True))
            upstreams.append(up)
    duration = _number(data.get("duration_s"))
    drain = _number(data.get("drain_timeout_s"))
    horizon = None if duration is None else duration + (60.0 if drain is None else drain)
    for i, a in _items(data, "timeline"):
        mta, vendor, proxy = a.get("mta"), a.get("vendor"), a.get("proxy")
        if isinstance(mta, str) and mta not in mta_names:
            hint = " (that is a vendor: write `vendor: NAME`)" if mta in vendor_names else ""
            out.append(Problem(f"timeline[{i}].mta", f"no such MTA; defined: {mta_names}{hint}", mta, True))
        if isinstance(vendor, str) and vendor not in vendor_names:
            hint = " (that is an MTA: write `mta: NAME`)" if vendor in mta_names else ""
            out.append(Problem(f"timeline[{i}].vendor", f"no such vendor; defined: {vendor_names}{hint}", vendor,
                               True))
        elif isinstance(vendor, str) and vendor_apis.get(vendor) != "ses":
            out += _api_misfits(f"timeline[{i}].set", a.get("set"), str(vendor_apis.get(vendor)))
        if isinstance(proxy, str) and proxy not in proxy_names:
            out.append(Problem(f"timeline[{i}].proxy", f"no such proxy; defined: {proxy_names}"
                               + ("" if proxy_names else " (add a `proxies:` entry with upstream: <mta or vendor>)"),
                               proxy, True))
        if a.get("sut") is not None:
            sut = data.get("sut")
            if not isinstance(sut, dict) or sut.get("command") is None:
                out.append(Problem(f"timeline[{i}].sut", "maildrill can only crash a SUT it starts: give "
                                   "`sut.command` (a SUT at `sut.url` is someone else's process)", a.get("sut"),
                                   True))
        at = _number(a.get("at_s"))
        if at is not None and horizon is not None and at > horizon:
            out.append(Problem(f"timeline[{i}].at_s", f"after the end of the drill ({horizon:g} s = duration_s + "
                               "drain_timeout_s); it would never fire", a.get("at_s"), True))
    load = data.get("load")
    classes = list(_items(load, "classes")) if isinstance(load, dict) else []
    class_names: list[str] = []
    for i, c in classes:
        name = c.get("name")
        if isinstance(name, str) and name in class_names:
            out.append(Problem(f"load.classes[{i}].name", "class names must be unique; rename this one", name, True))
        elif isinstance(name, str):
            class_names.append(name)
    sut = data.get("sut")
    needs_sut = any(isinstance(c.get("request"), dict) or (isinstance(c.get("smtp"), dict) and (
        c["smtp"].get("host") is None or c["smtp"].get("port") is None)) for _, c in classes)
    if needs_sut and sut is None:
        out.append(Problem("sut", "required: a load class sends to the SUT; give `sut: {command: [...]}` or "
                                  "`sut: {url: http://127.0.0.1:PORT}`"))
    if sut is None:  # a vendor's webhooks.url that is a path needs a SUT to be a path on
        for i, v in _items(data, "vendors"):
            hooks = v.get("webhooks")
            url = hooks.get("url") if isinstance(hooks, dict) else None
            if isinstance(url, str) and url.startswith("/"):
                out.append(Problem(f"vendors[{i}].webhooks.url", "is a path on the SUT, and the scenario has no "
                                   "`sut`; add one, or give a full http(s):// URL", url, True))
    thresholds = data.get("thresholds")
    if isinstance(thresholds, dict):
        out += _threshold_problems(thresholds, class_names, mta_names, vendor_names)
    return out


def _api_misfits(path: str, items: Any, api: str) -> list[Problem]:
    """What a vendor action sets that its vendor's `api` does not have (SES's daily quota on another vendor);
    the rest of the list is checked by the model."""
    try:
        specs = parse_behaviors(items)
    except (ValidationError, TypeError, ValueError):
        return []  # reported with its path by the model
    return [Problem(path, m) for m in vendor_misfits(specs, api) if m not in vendor_misfits(specs, "ses")]


def _defined(mtas: list[str], vendors: list[str]) -> str:
    return f"MTAs: {mtas}, vendors: {vendors}" if vendors else f"defined: {mtas}"


def _threshold_problems(thresholds: dict[Any, Any], classes: list[str], mtas: list[str],
                        vendors: Sequence[str] = ()) -> list[Problem]:
    """A scope is a class name or a receiver's name (an MTA or a vendor: metrics scope them alike)."""
    metrics = known_metrics()
    out: list[Problem] = []
    for key in thresholds:
        path = f"thresholds.{key}"
        if not isinstance(key, str):
            out.append(Problem(path, "a threshold key must be a metric name like `duplicates` or `latency_p99_s[otp]`"))
            continue
        name, scope = key, None
        if key.endswith("]") and "[" in key:
            name, scope = key[:-1].split("[", 1)
        if name not in metrics:
            out.append(Problem(path, f"unknown metric {name!r}; known: {sorted(metrics)}"))
            continue
        if scope is None:
            continue
        allowed = metrics[name]
        receivers = [*mtas, *vendors]
        if (scope in classes and "class" in allowed) or (scope in receivers and "mta" in allowed):
            continue
        kinds = " or ".join(sorted("MTA/vendor" if s == "mta" else s for s in allowed if s != "run")) \
            or "nothing (this metric is run-wide)"
        out.append(Problem(path, f"unknown scope {scope!r}: {name} can be scoped by {kinds}; "
                                 f"classes: {classes}, MTAs: {mtas}" + (f", vendors: {vendors}" if vendors else "")))
    return out


def known_metrics() -> dict[str, set[str]]:
    """Metric name → allowed scopes, from the metric registry."""
    return {name: set(info.scopes) for name, info in METRICS.items()}


# --- YAML line numbers for paths ----------------------------------------------------------------
def _line_map(text: str) -> dict[str, int]:
    """``"mtas[0].behaviors[1].rate_per_s" -> line`` for every node of the YAML document."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return {}
    out: dict[str, int] = {}
    stack: list[tuple[str, yaml.Node, int]] = [("", root, 0)] if root is not None else []
    seen: set[int] = set()
    while stack and len(out) < 100_000:
        path, node, depth = stack.pop()
        if id(node) in seen or depth > 64:  # aliases may make the graph cyclic
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else "?"
                sub = f"{path}.{key}" if path else str(key)
                out.setdefault(sub, k.start_mark.line + 1)
                stack.append((sub, v, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                sub = f"{path}[{i}]"
                out.setdefault(sub, v.start_mark.line + 1)
                stack.append((sub, v, depth + 1))
    return out


def _with_lines(problems: list[Problem], lines: dict[str, int]) -> list[Problem]:
    out = []
    for p in problems:
        path = p.path
        while path and path not in lines:  # the nearest written ancestor (a missing key has no line)
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        line = lines.get(path)
        out.append(Problem(p.path, f"{p.message} (line {line})", p.value, p.has_value) if line else p)
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        key = str(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
