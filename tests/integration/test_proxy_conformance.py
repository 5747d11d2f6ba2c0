"""One suite, two servers: the embedded proxy always, a real Toxiproxy when one is reachable.

API shapes, status codes and error bodies as Toxiproxy 2.x's, and every toxic's effect on real TCP
traffic through the proxy to a small echo server (latency within tolerance, bandwidth, slicer, limit_data,
timeout, reset_peer, slow_close), disable -> refused, enable, reset.
"""

from __future__ import annotations

import email.utils
import json
import os
import select
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


@pytest.fixture(params=["embedded", "embedded-uvloop", "real"])
def api(request: pytest.FixtureRequest) -> Iterator[str]:
    """The embedded proxy on asyncio's loop and on uvloop (what `maildrill proxy` runs), and a real Toxiproxy."""
    if request.param.startswith("embedded"):
        with EmbeddedToxiproxyThread(seed=1, uvloop=request.param == "embedded-uvloop") as tp:
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
    add(api, {"type": "latency", "attributes": {"latency": 200}})
    _, down = roundtrip(port)
    add(api, {"type": "latency", "stream": "upstream", "attributes": {"latency": 200}})
    _, both = roundtrip(port)
    assert 0.19 <= down - base < 0.45
    assert 0.38 <= both - base < 0.75


def test_bandwidth_limits_throughput(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "bandwidth", "attributes": {"rate": 100}})  # 100 KB/s downstream
    got, took = roundtrip(port, b"x" * 50_000, timeout=10)
    assert len(got) == 50_000
    assert 0.4 <= took < 2.0  # 50 KB at 100 KB/s = 0.5 s


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
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        t = time.monotonic()
        s.sendall(b"held")
        assert s.recv(100) == b""  # nothing came back; then the proxy closed
        assert 0.25 <= time.monotonic() - t < 2


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
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
        s.shutdown(socket.SHUT_WR)
        t = time.monotonic()
        assert s.recv(10) == b""
        assert 0.25 <= time.monotonic() - t < 2


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


# --- Toxiproxy's semantics, row by row (each measured on Toxiproxy 2.12.0 built from source) ----------------
class Greeter:
    """A server that sends `greeting` as each client connects and then only reads (like an SMTP banner)."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.sent = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.sendall(self.greeting)
            self.sent.set()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (send queue, receive queue) of every loopback TCP socket (/proc/net/tcp)."""
    out = {}
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            tx, rx = (int(q, 16) for q in queues.split(":"))
            out[(int(local.split(":")[1], 16), int(remote.split(":")[1], 16))] = (tx, rx)
    return out


def proxy_has_read(server_conn: socket.socket) -> bool:
    """Everything `server_conn` sent has been read by the process at the other end (the proxy): nothing left
    in this socket's send queue nor in the proxy's receive queue."""
    mine = server_conn.getsockname()[1]
    peer = server_conn.getpeername()[1]
    q = _tcp_queues()
    return q.get((mine, peer), (1, 0))[0] == 0 and q.get((peer, mine), (0, 1))[1] == 0


def read_to_eof(s: socket.socket) -> tuple[bytes, float]:
    """Everything until the peer's FIN, and when the FIN came (monotonic)."""
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got, time.monotonic()
        got += chunk


@pytest.fixture
def greeter() -> Iterator[Greeter]:
    g = Greeter(b"220 hello\r\n")
    yield g
    g.close()


@pytest.mark.parametrize("toxic", [None, {"type": "latency", "attributes": {"latency": 100}}])
def test_a_client_that_closes_at_once_closes_the_upstream(api: str, toxic: dict[str, object] | None) -> None:
    """Connect and close before the proxy has even reached the upstream: the upstream still sees the close."""
    up = socket.create_server(("127.0.0.1", 0))
    try:
        r = requests.post(api + "/proxies", json={"name": "quick", "listen": "127.0.0.1:0",
                                                  "upstream": f"127.0.0.1:{up.getsockname()[1]}"}, timeout=5)
        port = int(r.json()["listen"].rsplit(":", 1)[1])
        if toxic is not None:
            add(api, toxic, proxy="quick")
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        up.settimeout(5)
        conn, _ = up.accept()
        with conn:
            conn.settimeout(5)
            assert conn.recv(10) == b""
    finally:
        up.close()


def test_two_latency_toxics_add_up(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"name": "first", "type": "latency", "attributes": {"latency": 100}})
    add(api, {"name": "second", "type": "latency", "attributes": {"latency": 100}})
    _, took = roundtrip(port)
    assert took >= 0.19  # 100 + 100 ms: Toxiproxy ~201 ms (one toxic alone would be ~101 ms)


@pytest.mark.parametrize("toxic", [{"type": "latency", "attributes": {"latency": 300}},
                                   {"type": "bandwidth", "attributes": {"rate": 1}}])
def test_a_half_close_delivers_what_the_other_direction_still_holds(api: str, greeter: Greeter,
                                                                   toxic: dict[str, object]) -> None:
    """The client half-closes while the server's bytes wait in a downstream toxic: Toxiproxy closes the
    upstream connection, the downstream chain drains (the bytes arrive), then the client gets its FIN."""
    r = requests.post(api + "/proxies", json={"name": "greet", "listen": "127.0.0.1:0",
                                              "upstream": f"127.0.0.1:{greeter.port}"}, timeout=5)
    port = int(r.json()["listen"].rsplit(":", 1)[1])
    add(api, toxic, proxy="greet")  # bandwidth 1 KB/s: the 11-byte greeting is due after ~11 ms, in one piece
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        started = time.monotonic()
        wait_until(lambda: greeter.sent.is_set() and proxy_has_read(greeter.conns[-1]), 10,
                   what="the proxy to have read the greeting")
        s.shutdown(socket.SHUT_WR)
        got, fin_at = read_to_eof(s)
    assert got == b"220 hello\r\n"
    if toxic["type"] == "latency":
        assert fin_at - started >= 0.29


def test_slow_close_downstream_delays_the_fin_after_the_client_closes(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "slow_close", "attributes": {"delay": 500}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
        s.shutdown(socket.SHUT_WR)
        t = time.monotonic()
        got, fin_at = read_to_eof(s)
    assert got == b"" and fin_at - t >= 0.45  # Toxiproxy: FIN at ~501 ms


def test_timeout_is_an_idle_timer_reset_by_traffic_on_its_stream(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "attributes": {"timeout": 1000}})  # downstream: swallows the echoes
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        started = time.monotonic()
        closed_early = False
        while time.monotonic() - started < 2.0:  # a byte every 150 ms for 2 s
            s.sendall(b".")
            last = time.monotonic()
            ready, _, _ = select.select([s], [], [], 0.15)  # the pacing; a close would show here
            if ready:
                closed_early = s.recv(10) == b""
                break
        got, fin_at = read_to_eof(s)
    assert not closed_early and got == b""
    assert fin_at - last >= 0.9  # Toxiproxy: FIN ~1 s after the last byte (~3 s), not 1 s after connect


def test_reset_peer_added_to_an_open_connection_closes_it_with_a_fin(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        add(api, {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}})
        s.sendall(b"b")
        assert read_to_eof(s)[0] == b""  # an orderly close: linger 0 is set only as a connection opens
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # and a new connection is reset
        s.sendall(b"c")
        with pytest.raises(ConnectionResetError):
            read_to_eof(s)


def test_stacked_limit_data_toxics_each_apply(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"name": "a", "type": "limit_data", "attributes": {"bytes": 1000}})
    add(api, {"name": "b", "type": "limit_data", "attributes": {"bytes": 500}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"q" * 2000)
        assert read_to_eof(s)[0] == b"q" * 500


def test_limit_data_counts_from_when_it_was_added(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        add(api, {"type": "latency", "attributes": {"latency": 1}})
        s.sendall(b"w" * 300)
        got = b""
        while len(got) < 300:
            got += s.recv(65536)
        assert requests.delete(api + "/proxies/echo/toxics/latency_downstream", timeout=5).status_code == 204
        add(api, {"type": "limit_data", "attributes": {"bytes": 500}})
        s.sendall(b"x" * 400)
        got = b""
        while len(got) < 400:
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(got)} bytes: the 300 before the toxic were counted"
            got += chunk
        s.sendall(b"y" * 200)
        assert read_to_eof(s)[0] == b"y" * 100


def test_bandwidth_paces_within_a_chunk(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "bandwidth", "attributes": {"rate": 100}})  # 100 KB/s: 10 kB per 100 ms slice
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t = time.monotonic()
        s.sendall(b"b" * 100_000)
        first = s.recv(65536)
        first_at = time.monotonic() - t
        got = first
        while len(got) < 100_000:
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        took = time.monotonic() - t
    assert got == b"b" * 100_000
    assert first_at < 0.6  # Toxiproxy: first byte ~101 ms (a whole 64 kB chunk held would be >= 0.64 s)
    assert took >= 0.9  # and the whole at 100 KB/s


def test_toxicity_is_drawn_again_when_a_toxic_is_updated(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "timeout", "toxicity": 0.0, "attributes": {"timeout": 0}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"1")
        assert s.recv(10) == b"1"  # toxicity 0: not affected
        r = requests.patch(api + "/proxies/echo/toxics/timeout_downstream", json={"toxicity": 1.0}, timeout=5)
        assert r.status_code == 200
        s.sendall(b"2")
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.recv(10)  # affected now: the echo is swallowed


def test_a_new_upstream_restarts_the_proxy(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    other = Greeter(b"other\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"1")
            assert s.recv(10) == b"1"
            r = requests.post(api + "/proxies/echo", json={"upstream": f"127.0.0.1:{other.port}"}, timeout=5)
            assert r.status_code == 200 and r.json()["listen"] == f"127.0.0.1:{port}"
            assert read_to_eof(s)[0] == b""  # the open connection was closed
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.recv(10) == b"other\r\n"  # new connections go to the new upstream
    finally:
        other.close()


def test_slicer_sleeps_after_every_piece_the_last_too(api: str, echo: Echo) -> None:
    port = make_proxy(api, echo)
    add(api, {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 0, "delay": 300_000}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"A" * 10)  # one piece
        assert s.recv(100) == b"A" * 10
        a_at = time.monotonic()
        s.sendall(b"B" * 10)  # the next chunk waits out the delay after A's piece
        assert s.recv(100) == b"B" * 10
        assert time.monotonic() - a_at >= 0.15  # 300 ms after A's piece left; A's own delivery may lag


# --- API edges ---------------------------------------------------------------------------------------------
def test_a_browser_is_refused(api: str) -> None:
    r = requests.get(api + "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"},
                     timeout=5)
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (403, "User agent not allowed\n",
                                                                  "text/plain; charset=utf-8")
    r = requests.post(api + "/proxies", json={"name": "x", "upstream": "127.0.0.1:1"},
                      headers={"User-Agent": "Mozilla/5.0"}, timeout=5)
    assert r.status_code == 403
    assert requests.get(api + "/proxies", timeout=5).json() == {}


def test_populate_checks_the_whole_list_before_creating_anything(api: str, echo: Echo) -> None:
    body = [{"name": "a", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"},
            {"name": "b", "listen": "127.0.0.1:0"}]
    r = requests.post(api + "/populate", json=body, timeout=5)
    assert r.status_code == 400
    got = r.json()
    assert (got["status"], got["proxies"]) == (400, None)
    assert got["error"].startswith("missing required field: upstream at proxy 2"), got
    assert requests.get(api + "/proxies", timeout=5).json() == {}


def test_populate_with_an_empty_list_answers_null_proxies(api: str) -> None:
    r = requests.post(api + "/populate", json=[], timeout=5)
    assert (r.status_code, r.json()) == (201, {"proxies": None})


@pytest.mark.parametrize("body", [{"name": 5, "upstream": "127.0.0.1:1"},
                                  {"name": "x", "upstream": "127.0.0.1:1", "enabled": "yes"},
                                  {"name": "x", "upstream": "127.0.0.1:1", "enabled": "no"},
                                  {"name": "x", "upstream": 25}])
def test_proxy_fields_of_the_wrong_type_are_bad_requests(api: str, body: dict[str, object]) -> None:
    r = requests.post(api + "/proxies", json=body, timeout=5)
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body"), r.text
    assert requests.get(api + "/proxies", timeout=5).json() == {}


def test_an_attribute_beyond_int64_is_a_bad_request(api: str, echo: Echo) -> None:
    make_proxy(api, echo)
    r = requests.post(api + "/proxies/echo/toxics", json={"type": "latency", "attributes": {"latency": 2**63}},
                      timeout=5)
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body"), r.text
    assert requests.get(api + "/proxies/echo/toxics", timeout=5).json() == []


def test_a_chunked_request_body_is_accepted(api: str, echo: Echo) -> None:
    body = json.dumps({"name": "chunky", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.port}"}).encode()
    r = requests.post(api + "/proxies", data=iter([body[:10], body[10:]]), timeout=5,
                      headers={"Content-Type": "application/json"})  # a generator: Transfer-Encoding: chunked
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "chunky"


def test_toxics_are_listed_upstream_first(api: str, echo: Echo) -> None:
    make_proxy(api, echo)
    add(api, {"name": "down", "type": "latency", "stream": "downstream"})
    add(api, {"name": "up", "type": "latency", "stream": "upstream"})
    add(api, {"name": "down2", "type": "latency", "stream": "downstream"})
    assert [t["name"] for t in requests.get(api + "/proxies/echo/toxics", timeout=5).json()] == ["up", "down",
                                                                                                "down2"]
    assert [t["name"] for t in requests.get(api + "/proxies/echo", timeout=5).json()["toxics"]] == ["up", "down",
                                                                                                   "down2"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/version"), ("GET", "/proxies"), ("GET", "/proxies/nope")])
def test_responses_carry_a_request_id_and_a_date(api: str, method: str, path: str) -> None:
    r = requests.request(method, api + path, timeout=5)
    r2 = requests.request(method, api + path, timeout=5)
    assert r.headers["X-Toxiproxy-Request-Id"] and r.headers["X-Toxiproxy-Request-Id"] != \
        r2.headers["X-Toxiproxy-Request-Id"]
    assert email.utils.parsedate_to_datetime(r.headers["Date"]).tzinfo is not None


# --- maildrill's deliberate differences (embedded only; docs/fault-proxy.md lists them) -----------------------
@pytest.mark.parametrize("body", [{"name": "relay", "upstream": "10.1.2.3:25"},
                                  {"name": "relay", "listen": "0.0.0.0:0", "upstream": "127.0.0.1:25"},
                                  {"name": "relay", "upstream": "127.0.0.1:25", "enabled": False,
                                   "listen": "10.1.2.3:2525"}])
def test_the_embedded_proxy_refuses_addresses_off_this_machine(body: dict[str, object]) -> None:
    with EmbeddedToxiproxyThread() as tp:
        r = requests.post(tp.url + "/proxies", json=body, timeout=5)
        assert r.status_code == 400 and "is not a loopback address" in r.json()["error"], r.text
        assert "--allow-remote" in r.json()["error"]
        r = requests.post(tp.url + "/populate", json=[body], timeout=5)
        assert r.status_code == 400 and "is not a loopback address" in r.json()["error"], r.text
        assert requests.get(tp.url + "/proxies", timeout=5).json() == {}
        make = requests.post(tp.url + "/proxies", json={"name": "ok", "upstream": "127.0.0.1:25"}, timeout=5)
        assert make.status_code == 201
        r = requests.patch(tp.url + "/proxies/ok", json={"upstream": "10.1.2.3:25"}, timeout=5)
        assert r.status_code == 400 and "is not a loopback address" in r.json()["error"], r.text
        assert requests.get(tp.url + "/proxies/ok", timeout=5).json()["upstream"] == "127.0.0.1:25"


def test_allow_remote_requires_the_bearer_token() -> None:
    with EmbeddedToxiproxyThread(allow_remote=True) as tp:
        assert tp.token and len(tp.token) == 32
        r = requests.get(tp.url + "/proxies", timeout=5)
        assert (r.status_code, r.headers["WWW-Authenticate"]) == (401, "Bearer")
        assert requests.get(tp.url + "/proxies", headers={"Authorization": "Bearer nope"}, timeout=5).status_code \
            == 401
        auth = {"Authorization": f"Bearer {tp.token}"}
        r = requests.post(tp.url + "/proxies", json={"name": "relay", "upstream": "10.1.2.3:25", "enabled": False},
                          headers=auth, timeout=5)
        assert r.status_code == 201, r.text
        assert list(requests.get(tp.url + "/proxies", headers=auth, timeout=5).json()) == ["relay"]
    with EmbeddedToxiproxyThread(allow_remote=True, token="given-token") as tp:
        assert tp.token == "given-token"
        r = requests.get(tp.url + "/version", headers={"Authorization": "Bearer given-token"}, timeout=5)
        assert r.status_code == 200


def test_removing_a_timeout_toxic_closes_the_connections_it_was_on(api: str, echo: Echo) -> None:
    """Toxiproxy's timeout Cleanup closes the stream on removal, whether or not the toxicity draw first it."""
    port = make_proxy(api, echo)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as second:
        for s in (first, second):
            s.sendall(b"1")
            assert s.recv(10) == b"1"
        add(api, {"name": "t", "type": "timeout", "toxicity": 0.0, "attributes": {"timeout": 0}})
        for s in (first, second):
            s.sendall(b"2")
            assert s.recv(10) == b"2"  # toxicity 0: the echo passes
        assert requests.delete(api + "/proxies/echo/toxics/t", timeout=5).status_code == 204
        assert read_to_eof(first)[0] == b"" and read_to_eof(second)[0] == b""
    assert roundtrip(port)[0] == b"hello\n"  # new connections are fine
