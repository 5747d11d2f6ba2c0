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
    purpose: str       # the scenario's first comment line, or its description


def _dir(package: str) -> Path:
    # pip installs wheels unpacked, so the package's files are on disk; a zipped install would need as_file()
    return Path(str(resources.files(package)))


def scenarios_dir() -> Path:
    return _dir(SCENARIOS_PACKAGE)


def compose_file() -> Path:
    return _dir(COMPOSE_PACKAGE) / "docker-compose.yml"


def _purpose(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body:
                return body
        elif stripped.startswith("description:"):
            return stripped.split(":", 1)[1].strip().strip("'\"")
        elif stripped:
            continue
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
