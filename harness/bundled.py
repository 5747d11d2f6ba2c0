"""What ships inside the package: the bundled drills and the compose files, found with importlib.resources."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SCENARIOS_PACKAGE = "maildrill.scenarios"
COMPOSE_PACKAGE = "maildrill.compose"


@dataclass(frozen=True)
class BundledDrill:
    name: str          # the file's stem: `maildrill run NAME`
    path: Path
    purpose: str       # the scenario's description (or its first comment line)


def _dir(package: str) -> Path:
    # pip installs wheels unpacked, so the package's files are on disk; a zipped install would need as_file()
    return Path(str(resources.files(package)))


def scenarios_dir() -> Path:
    return _dir(SCENARIOS_PACKAGE)


def compose_file() -> Path:
    return _dir(COMPOSE_PACKAGE) / "docker-compose.yml"


def _purpose(text: str) -> str:
    """The scenario's `description:` (one line), else its first comment line without the leading "name — "."""
    for line in text.splitlines():
        if line.startswith("description:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    for line in text.splitlines():
        body = line.strip().lstrip("#").strip()
        if line.strip().startswith("#") and body:
            return body.split(" — ", 1)[-1]
    return ""


def bundled_drills() -> list[BundledDrill]:
    """Every bundled drill, by name."""
    out = []
    for path in sorted(scenarios_dir().glob("*.yaml")):
        out.append(BundledDrill(path.stem, path, _purpose(path.read_text(encoding="utf-8"))))
    return out


def bundled_drill(name: str) -> BundledDrill | None:
    """The bundled drill called NAME (with or without `.yaml`), or None."""
    stem = name.removesuffix(".yaml")
    return next((d for d in bundled_drills() if d.name == stem), None)


def resolve_scenario(arg: str | Path) -> Path:
    """What `maildrill run ARG` reads: the file ARG when it exists, else the bundled drill called ARG.
    Neither: a ScenarioError naming both and listing the bundled drills."""
    from maildrill.harness.errors import Problem, ScenarioError

    path = Path(arg)
    if path.is_file():
        return path
    drill = bundled_drill(str(arg)) if path.name == str(arg) else None  # a name, not a path with folders
    if drill is not None:
        return drill.path
    names = ", ".join(d.name for d in bundled_drills())
    why = "is a directory, not a scenario file" if path.is_dir() else "no such file"
    raise ScenarioError(str(arg), [Problem("(file)", f"{why}, and no bundled drill has that name; bundled drills "
                                                     f"(`maildrill scenarios`): {names}")])
