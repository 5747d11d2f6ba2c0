"""compose/ for real: only where a Docker engine answers (none does on maildrill's CI machines)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_stack_relays_a_message_through_real_toxiproxy_to_the_fleet() -> None:
    from maildrill.harness.run.compose import docker_engine_problem

    why = docker_engine_problem()
    if why:
        pytest.skip(why)
    import requests

    compose = ["docker", "compose", "-f", str(ROOT / "compose" / "docker-compose.yml")]
    subprocess.run([*compose, "up", "-d", "--build", "toxiproxy", "fleet"], check=True, timeout=900)
    try:
        assert requests.get("http://127.0.0.1:8474/version", timeout=10).ok
        proxies = requests.get("http://127.0.0.1:8474/proxies", timeout=10).json()
        assert set(proxies) == {"primary", "backup"}
        listen = proxies["primary"]["listen"].rsplit(":", 1)[1]
        send = (f"import smtplib; s = smtplib.SMTP('toxiproxy', {listen}, timeout=10); "
                "s.sendmail('a@x.test', ['u1@users.drill.test'], 'Subject: x\\r\\n\\r\\nx'); s.quit()")
        subprocess.run([*compose, "exec", "-T", "fleet", "python", "-c", send], check=True, timeout=60)
        metrics = requests.get("http://127.0.0.1:8025/metrics", headers={"Authorization": "Bearer drill-token"},
                               timeout=10).text
        assert 'maildrill_mta_messages_accepted_total{mta="primary"} 1' in metrics
    finally:
        subprocess.run([*compose, "down", "-v"], check=False, timeout=300)
