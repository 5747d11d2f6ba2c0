"""One suite, two servers: the embedded proxy always, a real Toxiproxy when one is reachable.

API shapes, status codes and error bodies as Toxiproxy 2.x's, and every toxic's effect on real TCP
traffic through the proxy to a small echo server (latency within tolerance, bandwidth, slicer, limit_data,
timeout, reset_peer, slow_close), disable -> refused, enable, reset.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from maildrill.harness.clock import wait_until
from maildrill.harness.faults import EmbeddedToxiproxyThread
from maildrill.harness.faults.real import toxiproxy_server


class Echo:
    """A TCP echo server on a thread (what the proxies sit in front of)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _real_toxiproxy() -> Iterator[str]:
    url = os.environ.get("TOXIPROXY_URL")
    if url:
        yield url
        return
    if shutil.which("toxiproxy-server") is None:
        pytest.skip("no real Toxiproxy: set TOXIPROXY_URL or put toxiproxy-server on PATH to run the conformance "
                    "suite against it too")
    with toxiproxy_server() as started:
        wait_until(lambda: _answers(started), 10, what="toxiproxy-server to answer")
        yield started


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/version", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(params=["embedded", "real"])
def api(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "embedded":
        with EmbeddedToxiproxyThread(seed=1) as tp:
            yield tp.url
    else:
        gen = _real_toxiproxy()
        url = next(gen)
        requests.post(url + "/reset", timeout=5)
        yield url
        for name in requests.get(url + "/proxies", timeout=5).json():
            requests.delete(f"{url}/proxies/{name}", timeout=5)
        gen.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    e = Echo()
    yield e
    e.close()


def make_proxy(api: str, echo: Echo, name: str = "echo") -> int:
    r = requests.post(api + "/proxies", json={"name": name, "listen": "127.0.0.1:0",
                                             "upstream": f"127.0.0.1:{echo.port}"}, timeout=5)
    assert r.status_code == 201, r.text
    return int(r.json()["listen"].rsplit(":", 1)[1])


def roundtrip(port: int, payload: bytes = b"hello\n", timeout: float = 5.0) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t = time.monotonic()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t


# --- the API -----------------------------------------------------------------------------------------
def documented(proxy: dict[str, Any]) -> dict[str, Any]:
    """A proxy's JSON without the `"Logger": {}` that Toxiproxy 2.5+ leaks from its Go struct (an internal
    zerolog handle with no JSON tag, not part of the API; the embedded proxy does not copy it)."""
    assert set(proxy) - {"name", "listen", "upstream", "enabled", "toxics"} <= {"Logger"}, proxy
    return {k: v for k, v in proxy.items() if k != "Logger"}


def test_api_shapes_and_status_codes(api: str, echo: Echo) -> None:
    assert requests.get(api + "/version", timeout=5).json()["version"]
    assert requests.get(api + "/proxies", timeout=5).json() == {}
    port = make_proxy(api, echo)
    want = {"name": "echo", "listen": f"127.0.0.1:{port}", "upstream": f"127.0.0.1:{echo.port}", "enabled": True,
            "toxics": []}
    assert {k: documented(v) for k, v in requests.get(api + "/proxies", timeout=5).json().items()} == {"echo": want}
    assert documented(requests.get(api + "/proxies/echo", timeout=5).json()) == want

    r = requests.post(api + "/proxies/echo/toxics", json={"type": "latency", "attributes": {"latency": 50}},
                      timeout=5)
    assert r.status_code == 200
    toxic = {"name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1,
             "attributes": {"latency": 50, "jitter": 0}}
    assert r.json() == toxic
    assert requests.get(api + "/proxies/echo/toxics", timeout=5).json() == [toxic]
    assert requests.get(api + "/proxies/echo/toxics/latency_downstream", timeout=5).json() == toxic
    r = requests.patch(api + "/proxies/echo/toxics/latency_downstream", json={"attributes": {"latency": 80}},
                       timeout=5)
    assert (r.status_code, r.json()["attributes"]) == (200, {"latency": 80, "jitter": 0})
    assert requests.get(api + "/proxies/echo", timeout=5).json()["toxics"][0]["attributes"]["latency"] == 80
    assert requests.delete(api + "/proxies/echo/toxics/latency_downstream", timeout=5).status_code == 204

    r = requests.patch(api + "/proxies/echo", json={"enabled": False}, timeout=5)
    assert (r.status_code, r.json()["enabled"]) == (200, False)
    assert requests.post(api + "/reset", timeout=5).status_code == 204
    assert requests.get(api + "/proxies/echo", timeout=5).json()["enabled"] is True
    assert requests.delete(api + "/proxies/echo", timeout=5).status_code == 204
    assert requests.get(api + "/proxies", timeout=5).json() == {}


def test_populate_creates_and_keeps_proxies(api: str, echo: Echo) -> None:
    body = [{"name": "a", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"}]
    r = requests.post(api + "/populate", json=body, timeout=5)
    assert r.status_code == 201
    assert sorted(p["name"] for p in r.json()["proxies"]) == ["a", "b"]
    assert set(requests.get(api + "/proxies", timeout=5).json()) == {"a", "b"}


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("GET", "/proxies/nope", None, 404, "proxy not found"),
    ("POST", "/proxies", {"name": "echo", "upstream": "127.0.0.1:1"}, 409, "proxy already exists"),
    ("POST", "/proxies", {"upstream": "127.0.0.1:1"}, 400, "missing required field: name"),
    ("POST", "/proxies/echo/toxics", {"type": "bogus"}, 400, "invalid toxic type"),
    ("POST", "/proxies/echo/toxics", {"type": "latency", "stream": "sideways"}, 400,
     "stream was invalid, can be either upstream or downstream"),
    # Toxiproxy's attributes are Go integers: JSON 400.0 does not unmarshal into them
    ("POST", "/proxies/echo/toxics", {"type": "latency", "attributes": {"latency": 400.0}}, 400, "bad request body"),
    ("GET", "/proxies/echo/toxics/nope", None, 404, "toxic not found"),
    ("DELETE", "/proxies/echo/toxics/nope", None, 404, "toxic not found"),
])
def test_errors_have_toxiproxy_bodies(api: str, echo: Echo, method: str, path: str, body: object, status: int,
                                      error: str) -> None:
    make_proxy(api, echo)
    r = requests.request(method, api + path, json=body, timeout=5)
    assert r.status_code == status
    got = r.json()
    assert got["status"] == status and got["error"].startswith(error), got


def test_duplicate_toxic_is_a_conflict(api: str, echo: Echo) -> None:
    make_proxy(api, echo)
    toxic = {"type": "latency", "attributes": {"latency": 1}}
    assert requests.post(api + "/proxies/echo/toxics", json=toxic, timeout=5).status_code == 200
    r = requests.post(api + "/proxies/echo/toxics", json=toxic, timeout=5)
    assert r.status_code == 409 and r.json()["error"].startswith("toxic already exists")


# --- toxics on real traffic -----------------------------------------------------------------------------
def add(api: str, body: dict[str, object], proxy: str = "echo") -> None:
    r = requests.post(f"{api}/proxies/{proxy}/toxics", json=body, timeout=5)
    assert r.status_code == 200, r.text


def test_no_toxic_relays_bytes_unchanged(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    payload = bytes(range(256)) * 400
    got, _ = roundtrip(port, payload)
    assert got == payload


def test_latency_delays_each_direction_by_its_latency(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    _, base = roundtrip(port)
    # 1 s per direction: long enough that the upper bounds ("once per direction, not twice") leave most of a
    # second for a loaded machine's scheduling delays
    add(api, {"type": "latency", "attributes": {"latency": 1000}})
    _, down = roundtrip(port, timeout=30)
    add(api, {"type": "latency", "stream": "upstream", "attributes": {"latency": 1000}})
    _, both = roundtrip(port, timeout=30)
    assert 0.99 <= down - base < 1.9
    assert 1.98 <= both - base < 2.9


def test_bandwidth_limits_throughput(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "bandwidth", "attributes": {"rate": 100}})  # 100 KB/s downstream
    got, took = roundtrip(port, b"x" * 50_000, timeout=30)
    assert len(got) == 50_000
    assert took >= 0.4  # 50 KB at 100 KB/s = 0.5 s (unthrottled it takes milliseconds)


def test_slicer_delivers_the_data_in_small_pieces(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 0, "delay": 20000}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"y" * 100)
        sizes = []
        while sum(sizes) < 100:
            chunk = s.recv(65536)
            assert chunk
            sizes.append(len(chunk))
    assert len(sizes) >= 5 and max(sizes) <= 20


def test_limit_data_closes_after_n_bytes(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "limit_data", "attributes": {"bytes": 10}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"z" * 50)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got == b"z" * 10


def test_timeout_holds_data_then_closes(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "attributes": {"timeout": 300}})
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:  # the close must come, not a timeout
        t = time.monotonic()
        s.sendall(b"held")
        assert s.recv(100) == b""  # nothing came back; then the proxy closed
        assert time.monotonic() - t >= 0.25


def test_timeout_zero_holds_forever(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "attributes": {"timeout": 0}})
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"held")
        with pytest.raises(TimeoutError):
            s.recv(100)


def test_reset_peer_is_seen_by_the_client(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"bye")
        with pytest.raises(ConnectionResetError):
            s.recv(100)
            s.recv(100)


def test_slow_close_delays_the_close(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "slow_close", "stream": "upstream", "attributes": {"delay": 300}})
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:  # the close must come, not a timeout
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
        s.shutdown(socket.SHUT_WR)
        t = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - t >= 0.25


def test_toxicity_zero_leaves_connections_alone(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "toxicity": 0.0, "attributes": {"timeout": 0}})
    got, _ = roundtrip(port)
    assert got == b"hello\n"


def test_toxics_apply_to_connections_already_open(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        add(api, {"type": "latency", "attributes": {"latency": 250}})
        t = time.monotonic()
        s.sendall(b"b")
        assert s.recv(10) == b"b"
        assert time.monotonic() - t >= 0.24


def test_disable_refuses_and_closes_open_connections_enable_restores(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as open_conn:
        open_conn.sendall(b"1")
        assert open_conn.recv(10) == b"1"
        assert requests.patch(api + "/proxies/echo", json={"enabled": False}, timeout=5).status_code == 200
        assert open_conn.recv(10) == b""  # closed by the proxy
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert requests.patch(api + "/proxies/echo", json={"enabled": True}, timeout=5).status_code == 200
    assert roundtrip(port)[0] == b"hello\n"


def test_reset_removes_toxics_and_enables_everything(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "attributes": {"timeout": 0}})
    requests.patch(api + "/proxies/echo", json={"enabled": False}, timeout=5)
    assert requests.post(api + "/reset", timeout=5).status_code == 204
    assert requests.get(api + "/proxies/echo/toxics", timeout=5).json() == []
    assert roundtrip(port)[0] == b"hello\n"
