"""compose/ and the Dockerfile, checked without Docker: they parse, and every service, port and name in them
agrees with the fleet config, the Toxiproxy config, the CLI's flags and the environment maildrill documents."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from maildrill.fake_mta.config import load_fleet_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
DOC = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
SERVICES = DOC["services"]


def test_every_service_is_on_the_drill_network_and_publishes_loopback_only() -> None:
    assert set(SERVICES) == {"toxiproxy", "fleet", "sut", "locust-master", "locust-worker"}
    assert DOC["networks"] == {"drill": {"driver": "bridge"}}
    for name, svc in SERVICES.items():
        assert svc["networks"] == ["drill"], name
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_images_and_build_context_exist() -> None:
    assert SERVICES["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy:")
    build = SERVICES["fleet"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    local = SERVICES["fleet"]["image"]
    assert all(SERVICES[s]["image"] == local for s in ("sut", "locust-master", "locust-worker"))


def test_toxiproxy_sits_in_front_of_ports_the_fleet_really_listens_on() -> None:
    fleet = load_fleet_config(COMPOSE / "fleet.yaml")
    listening = {m.port for m in fleet.mtas}
    proxies = json.loads((COMPOSE / "toxiproxy.json").read_text())
    for p in proxies:
        host, port = p["upstream"].rsplit(":", 1)
        assert host == "fleet" and int(port) in listening, p
    mounted = SERVICES["toxiproxy"]["volumes"][0].split(":")[0]
    assert (COMPOSE / mounted).resolve() == COMPOSE / "toxiproxy.json"
    assert fleet.control.port == int(SERVICES["fleet"]["ports"][0].rsplit(":", 1)[1])


def test_the_sut_reaches_every_mta_through_toxiproxy_with_the_documented_variables() -> None:
    env = SERVICES["sut"]["environment"]
    listens = {p["name"]: int(p["listen"].rsplit(":", 1)[1]) for p in
               json.loads((COMPOSE / "toxiproxy.json").read_text())}
    documented = (ROOT / "docs" / "scenarios.md").read_text()
    for var in ("MAILDRILL_SMTP_HOST", "MAILDRILL_SMTP_PORT", "MAILDRILL_SUT_PORT", "MAILDRILL_RUN_DIR"):
        assert var in documented and var in env
    assert (env["MAILDRILL_SMTP_HOST"], int(env["MAILDRILL_SMTP_PORT"])) == ("toxiproxy", listens["primary"])
    for name, port in listens.items():
        assert (env[f"MAILDRILL_SMTP_{name.upper()}_HOST"], int(env[f"MAILDRILL_SMTP_{name.upper()}_PORT"])) == (
            "toxiproxy", port)


def test_the_dockerfile_installs_the_package_and_runs_a_real_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install --no-cache-dir \. ", text, re.M)
    assert "USER maildrill" in text
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd[:2] == ["maildrill", "mta"]
    helptext = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--help"], capture_output=True, text=True,
                              cwd=ROOT, timeout=60, check=True).stdout
    for flag in (a for a in cmd[2:] if a.startswith("--")):
        assert flag in helptext, f"the Dockerfile's CMD uses {flag}, which `maildrill mta` does not have"
    assert cmd == SERVICES["fleet"]["command"]
    for copied in re.findall(r"^COPY (\S+) ", text, re.M):
        if copied != "pyproject.toml":
            assert (ROOT / copied).exists(), copied


def test_locust_services_use_the_locustfile_and_plan_variable_maildrill_uses() -> None:
    from maildrill.harness.load.plan import PLAN_ENV

    for name in ("locust-master", "locust-worker"):
        svc = SERVICES[name]
        assert "/opt/maildrill/locustfile.py" in svc["command"]
        assert PLAN_ENV in svc["environment"]
    assert (ROOT / "harness" / "load" / "locustfile.py").exists()
    assert SERVICES["locust-worker"]["command"][-2:] == ["--master-host", "locust-master"]


def test_run_compose_uses_the_compose_files_toxiproxy_image_and_says_when_docker_is_missing() -> None:
    from maildrill.harness.run.compose import docker_engine_problem, toxiproxy_image

    assert toxiproxy_image() == SERVICES["toxiproxy"]["image"]
    if docker_engine_problem() is None:
        return  # an engine answers: the live test (tests/e2e/test_compose_live.py) covers this machine
    got = subprocess.run([sys.executable, "-m", "maildrill", "run", "scenarios/ci-retry-regression.yaml", "--compose"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert got.returncode == 3
    assert "--compose: no Docker engine answers" in got.stderr and "drop --compose" in got.stderr


def test_the_dockerfile_links_the_paths_compose_names_to_the_installed_package() -> None:
    """The image keeps no source tree (a `maildrill/` folder in the working directory would shadow the installed
    package); /opt/maildrill/compose and /opt/maildrill/locustfile.py are links the Dockerfile computes with
    `python -c`: run those snippets here against the installed package and check where they point."""
    from maildrill.harness.load.process import LOCUSTFILE

    text = (ROOT / "Dockerfile").read_text()
    assert "rm -rf /tmp/maildrill-src" in text and re.search(r"^WORKDIR /opt/maildrill$", text, re.M)
    links = dict((target, snippet) for snippet, target in
                 re.findall(r"ln -s \"\$\(python -c '([^']+)'\)\" \\\n\s+(\S+)", text))
    assert set(links) == {"/opt/maildrill/compose", "/opt/maildrill/locustfile.py"}, links
    got = {t: Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                  check=True, cwd="/").stdout.strip()) for t, code in links.items()}
    assert got["/opt/maildrill/locustfile.py"] == LOCUSTFILE
    assert (got["/opt/maildrill/compose"] / "fleet.yaml").read_text() == (COMPOSE / "fleet.yaml").read_text()
    assert "/opt/maildrill/compose/fleet.yaml" in SERVICES["fleet"]["command"]
