"""`maildrill run --compose`: a real Toxiproxy in a container (the image compose/docker-compose.yml names), started
through the docker SDK on the host network so it reaches the drill's fake MTAs on 127.0.0.1, and removed after."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import yaml
from maildrill.fake_mta.net import accepts
from maildrill.harness.bundled import compose_file
from maildrill.harness.errors import InfrastructureError

from maildrill.polling import poll_until

COMPOSE_FILE = compose_file()


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers; else why not (closing every socket the check opened)."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'maildrill[docker]')"
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        return f"no Docker engine answers (no socket at {host[len('unix://'):]})"
    client = None
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    finally:
        if client is not None:
            client.close()
    return None


def toxiproxy_image() -> str:
    return str(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["toxiproxy"]["image"])


@contextlib.contextmanager
def compose_toxiproxy(run_id: str, timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the URL of a real Toxiproxy API on 127.0.0.1; raises InfrastructureError when Docker cannot."""
    problem = docker_engine_problem()
    if problem is not None:
        raise InfrastructureError(f"--compose: {problem}; start Docker, or drop --compose to use the embedded proxy")
    import docker

    client = docker.from_env(timeout=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    image = toxiproxy_image()
    try:
        container = client.containers.run(image, ["-host", "127.0.0.1", "-port", str(port)], detach=True,
                                          network_mode="host", name=f"maildrill-toxiproxy-{run_id}", remove=True)
    except Exception as exc:
        raise InfrastructureError(f"--compose: could not start {image} ({type(exc).__name__}: {str(exc)[:160]})") \
            from None
    try:
        url = f"http://127.0.0.1:{port}"
        poll_until(lambda: accepts("127.0.0.1", port), timeout_s, interval_s=0.1, error=lambda: InfrastructureError(
            f"--compose: {image} did not listen on 127.0.0.1:{port} in {timeout_s:g} s"))
        yield url
    finally:
        with contextlib.suppress(Exception):
            container.stop(timeout=5)
        client.close()
