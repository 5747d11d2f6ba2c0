"""The embedded proxy under random API sequences and connection churn: its API view always matches what
traffic shows, it never answers 500, and no connection leaks."""

from __future__ import annotations

import collections
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from maildrill.harness.clock import wait_until
from maildrill.harness.faults import EmbeddedToxiproxyThread
from test_proxy_conformance import Echo, roundtrip

NAMES = st.sampled_from(["a", "b", "c"])
HARMLESS = st.sampled_from([("latency", {"latency": 1}), ("limit_data", {"bytes": 1_000_000}),
                            ("slicer", {"average_size": 4000, "size_variation": 0, "delay": 0}),
                            ("bandwidth", {"rate": 100_000})])


class ProxyAPIMachine(RuleBasedStateMachine):
    """Model: name -> (enabled, toxic names). Toxics here never block traffic, so traffic must flow exactly
    through the enabled proxies and be refused by the disabled ones."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, tuple[bool, set[str]]] = {}
        self.ports: dict[str, int] = {}

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        r = requests.request(method, SERVER.url + path, json=body, timeout=5)
        assert r.status_code < 500, r.text
        return r

    @rule(name=NAMES)
    def create(self, name: str) -> None:
        r = self.call("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{ECHO.port}"})
        if name in self.model:
            assert r.status_code == 409
        else:
            assert r.status_code == 201
            self.model[name] = (True, set())
            self.ports[name] = int(r.json()["listen"].rsplit(":", 1)[1])

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        r = self.call("DELETE", f"/proxies/{name}")
        assert r.status_code == (204 if name in self.model else 404)
        self.model.pop(name, None)

    @rule(name=NAMES, enabled=st.booleans())
    def toggle(self, name: str, enabled: bool) -> None:
        r = self.call("PATCH", f"/proxies/{name}", {"enabled": enabled})
        if name not in self.model:
            assert r.status_code == 404
            return
        assert (r.status_code, r.json()["enabled"]) == (200, enabled)
        self.model[name] = (enabled, self.model[name][1])
        self.ports[name] = int(r.json()["listen"].rsplit(":", 1)[1])

    @rule(name=NAMES, toxic=HARMLESS, stream=st.sampled_from(["upstream", "downstream"]))
    def add_toxic(self, name: str, toxic: tuple[str, dict[str, int]], stream: str) -> None:
        kind, attrs = toxic
        r = self.call("POST", f"/proxies/{name}/toxics", {"type": kind, "stream": stream, "attributes": attrs})
        if name not in self.model:
            assert r.status_code == 404
            return
        tname = f"{kind}_{stream}"
        if tname in self.model[name][1]:
            assert r.status_code == 409
        else:
            assert r.status_code == 200
            self.model[name][1].add(tname)

    @precondition(lambda self: any(t for _, t in self.model.values()))
    @rule(data=st.data())
    def update_or_remove_toxic(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(n for n, (_, t) in self.model.items() if t)))
        toxic = data.draw(st.sampled_from(sorted(self.model[name][1])))
        if data.draw(st.booleans()):
            r = self.call("PATCH", f"/proxies/{name}/toxics/{toxic}", {"toxicity": 1.0})
            assert r.status_code == 200
        else:
            assert self.call("DELETE", f"/proxies/{name}/toxics/{toxic}").status_code == 204
            self.model[name][1].discard(toxic)

    @rule()
    def reset(self) -> None:
        assert self.call("POST", "/reset").status_code == 204
        self.model = {n: (True, set()) for n in self.model}

    @invariant()
    def api_view_is_the_model(self) -> None:
        got = self.call("GET", "/proxies").json()
        assert {n: (p["enabled"], {t["name"] for t in p["toxics"]}) for n, p in got.items()} == self.model

    @invariant()
    def traffic_shows_the_same(self) -> None:
        for name, (enabled, _) in self.model.items():
            if enabled:
                assert roundtrip(self.ports[name], b"ping")[0] == b"ping"
            else:
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", self.ports[name]), timeout=5)

    def teardown(self) -> None:
        requests.post(SERVER.url + "/reset", timeout=5)
        for name in list(self.model):
            requests.delete(f"{SERVER.url}/proxies/{name}", timeout=5)


SERVER: EmbeddedToxiproxyThread
ECHO: Echo


@pytest.fixture(scope="module", autouse=True)
def _server() -> Iterator[None]:
    global SERVER, ECHO
    ECHO = Echo()
    with EmbeddedToxiproxyThread(seed=0) as SERVER:
        yield
    ECHO.close()


TestProxyAPI = ProxyAPIMachine.TestCase
TestProxyAPI.settings = settings(max_examples=30, stateful_step_count=12, deadline=None,
                                 suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=["asyncio", "uvloop"])
def churn_server(request: pytest.FixtureRequest) -> Iterator[EmbeddedToxiproxyThread]:
    if request.param == "uvloop" and sys.platform == "win32":
        pytest.skip("uvloop does not support Windows (maildrill installs it everywhere else)")
    with EmbeddedToxiproxyThread(seed=0, uvloop=request.param == "uvloop") as server:
        yield server


def test_no_connection_leaks_under_disable_enable_churn(churn_server: EmbeddedToxiproxyThread) -> None:
    """1,000 connections while the proxy is disabled and enabled every 50 ms: afterwards none is left open."""
    server = churn_server
    r = requests.post(server.url + "/proxies", json={"name": "churn", "listen": "127.0.0.1:0",
                                                      "upstream": f"127.0.0.1:{ECHO.port}"}, timeout=5)
    port = int(r.json()["listen"].rsplit(":", 1)[1])
    done = threading.Event()
    outcomes: list[str] = []

    def toggler() -> None:
        enabled = True
        while not done.is_set():
            enabled = not enabled
            requests.patch(f"{server.url}/proxies/churn", json={"enabled": enabled}, timeout=5)
            done.wait(0.05)  # the churn period
        requests.patch(f"{server.url}/proxies/churn", json={"enabled": True}, timeout=5)

    def client(n: int) -> None:
        for i in range(n):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"x" * 100)
                    if i % 10 == 0:
                        done.wait(0.03)  # hold every tenth connection open across a toggle
                    outcomes.append("ok" if s.recv(100) else "closed")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
            done.wait(0.004)  # pacing: 250 connections per client over about 20 toggles

    t = threading.Thread(target=toggler)
    t.start()
    clients = [threading.Thread(target=client, args=(250,)) for _ in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(240)  # a loaded machine; a hang is caught by len(outcomes) below
    done.set()
    t.join(10)
    assert len(outcomes) == 1000
    assert outcomes.count("ok") > 0, collections.Counter(outcomes)
    wait_until(lambda: server.open_connections("churn") == 0, 30, what="every proxied connection to be closed")
    assert roundtrip(port, b"still works")[0] == b"still works"
    requests.delete(f"{server.url}/proxies/churn", timeout=5)
