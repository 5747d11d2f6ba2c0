"""The embedded proxy as users drive it: the stock toxiproxy-python client with real SMTP flowing through it
to a fake MTA, our adapter (events on the run clock), and `maildrill proxy` as a subprocess."""

from __future__ import annotations

import json
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from maildrill.fake_mta.config import FleetSpec
from maildrill.fake_mta.recording import MemoryRecorder
from maildrill.fake_mta.testing import FleetThread
from maildrill.harness.errors import ToxiproxyUnreachable, UsageError
from maildrill.harness.faults import EmbeddedToxiproxyThread, ToxiproxyAdapter
from toxiproxy import Toxiproxy

ROOT = Path(__file__).resolve().parents[2]
MSG = "Subject: reset\r\n\r\nyour link"


@pytest.fixture
def fleet() -> Iterator[FleetThread]:
    with FleetThread(FleetSpec.model_validate({"mtas": [{"name": "vendor"}]})) as f:
        yield f


@pytest.fixture
def proxy_server() -> Iterator[EmbeddedToxiproxyThread]:
    with EmbeddedToxiproxyThread(seed=3) as tp:
        yield tp


def accepted(fleet: FleetThread) -> list[str | None]:
    assert fleet.memory is not None
    return [e["corr"] for e in fleet.memory.events if e["kind"] == "mta.message.accepted"]


def test_toxiproxy_python_drives_the_embedded_proxy_with_smtp_flowing(fleet: FleetThread,
                                                                      proxy_server: EmbeddedToxiproxyThread) -> None:
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", proxy_server.port)
    assert client.running() and client.version()
    proxy = client.create(upstream=f"127.0.0.1:{fleet.fleet['vendor'].port}", name="vendor")
    host, port = proxy.listen.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=5) as smtp:
        assert smtp.sendmail("app@app.drill.test", ["u1@users.drill.test"], MSG) == {}

    proxy.add_toxic(type="latency", attributes={"latency": 100})
    assert set(proxy.toxics()) == {"latency_downstream"}
    with smtplib.SMTP(host, int(port), timeout=5) as smtp:
        assert smtp.sendmail("app@app.drill.test", ["u2@users.drill.test"], MSG) == {}
    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}

    with proxy.down(), pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(host, int(port), timeout=5)
    with smtplib.SMTP(host, int(port), timeout=5) as smtp:
        assert smtp.sendmail("app@app.drill.test", ["u3@users.drill.test"], MSG) == {}
    assert accepted(fleet) == ["u1", "u2", "u3"]
    assert set(client.proxies()) == {"vendor"}
    client.destroy_all()
    assert client.proxies() == {}


def test_the_adapter_records_every_change_on_the_run_clock(fleet: FleetThread,
                                                           proxy_server: EmbeddedToxiproxyThread) -> None:
    rec = MemoryRecorder("proxy")
    a = ToxiproxyAdapter(proxy_server.url, timeout_s=5, recorder=rec)
    up = f"127.0.0.1:{fleet.fleet['vendor'].port}"
    info = a.create_proxy("vendor", upstream=up)
    name = a.add_toxic("vendor", type="latency", attributes={"latency": 20})
    a.update_toxic("vendor", name, attributes={"latency": 40})
    a.remove_toxic("vendor", name)
    a.set_enabled("vendor", False)
    a.set_enabled("vendor", True)
    a.reset()
    a.delete_proxy("vendor")
    toxic = "latency_downstream"
    assert [(e["kind"], e.get("proxy"), e.get("toxic")) for e in rec.events] == [
        ("proxy.created", "vendor", None), ("proxy.toxic.added", "vendor", toxic),
        ("proxy.toxic.updated", "vendor", toxic), ("proxy.toxic.removed", "vendor", toxic),
        ("proxy.disabled", "vendor", None), ("proxy.enabled", "vendor", None), ("proxy.reset", None, None),
        ("proxy.deleted", "vendor", None)]
    first = {k: v for k, v in rec.events[0].items() if k not in ("t_s", "source", "kind", "corr")}
    assert first == {"proxy": "vendor", "listen": info.listen, "upstream": up, "enabled": True}
    assert json.loads(rec.events[2]["attributes"]) == {"jitter": 0, "latency": 40}
    times = [e["t_s"] for e in rec.events]
    assert times == sorted(times)


def test_the_adapter_says_what_is_wrong_and_how_to_fix_it(proxy_server: EmbeddedToxiproxyThread) -> None:
    a = ToxiproxyAdapter(proxy_server.url, timeout_s=5)
    a.create_proxy("p", upstream="127.0.0.1:9")
    with pytest.raises(UsageError, match=r"cannot create proxy 'p': proxy already exists: 'p' .*\(409\)"):
        a.create_proxy("p", upstream="127.0.0.1:9")
    with pytest.raises(UsageError, match=r"latency has no attribute 'latncy'; its attributes: latency, jitter"):
        a.add_toxic("p", type="latency", attributes={"latncy": 5})
    with pytest.raises(UsageError, match=r"cannot read proxy 'q': proxy not found: 'q'; proxies: \['p'\] \(404\)"):
        a.proxy("q")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(ToxiproxyUnreachable, match=rf"Toxiproxy at http://127.0.0.1:{dead} is unreachable"):
        ToxiproxyAdapter(f"http://127.0.0.1:{dead}", timeout_s=2).version()


def test_two_servers_in_one_process_do_not_mix(proxy_server: EmbeddedToxiproxyThread) -> None:
    with EmbeddedToxiproxyThread() as other:
        a, b = ToxiproxyAdapter(proxy_server.url), ToxiproxyAdapter(other.url)
        a.create_proxy("only-in-a", upstream="127.0.0.1:9")
        assert (set(a.proxies()), set(b.proxies())) == ({"only-in-a"}, set())


def test_maildrill_proxy_serves_the_api_until_sigterm(tmp_path: Path, fleet: FleetThread) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "vendor", "listen": "127.0.0.1:0",
                                   "upstream": f"127.0.0.1:{fleet.fleet['vendor'].port}"}]))
    proc = subprocess.Popen([sys.executable, "-m", "maildrill", "proxy", "--port", "0", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("maildrill proxy: Toxiproxy API on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1].strip()
        line = proc.stdout.readline()
        assert line.startswith("  proxy vendor: 127.0.0.1:")
        listen = line.split()[2]
        assert proc.stdout.readline() == "ready (uvloop; Ctrl-C to stop)\n"  # uvloop: a regular dependency on Linux
        info = ToxiproxyAdapter(url).proxy("vendor")
        assert info.listen == listen
        with smtplib.SMTP(info.listen_host, info.listen_port, timeout=5) as smtp:
            assert smtp.sendmail("app@app.drill.test", ["u9@users.drill.test"], MSG) == {}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out.endswith("maildrill proxy: stopped\n")
    assert accepted(fleet) == ["u9"]


def test_maildrill_proxy_allow_remote_prints_a_token_and_requires_it() -> None:
    import requests

    proc = subprocess.Popen([sys.executable, "-m", "maildrill", "proxy", "--port", "0", "--allow-remote"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        line = proc.stdout.readline()
        assert line.startswith("  API token (send 'Authorization: Bearer <token>'): ")
        token = line.rsplit(" ", 1)[1].strip()
        assert proc.stdout.readline() == "ready (uvloop; Ctrl-C to stop)\n"
        assert requests.get(url + "/proxies", timeout=5).status_code == 401
        r = requests.get(url + "/proxies", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert (r.status_code, r.json()) == (200, {})
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out.endswith("maildrill proxy: stopped\n")


def test_maildrill_proxy_bad_config_and_taken_port(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "x", "colour": "blue"}]')
    got = subprocess.run([sys.executable, "-m", "maildrill", "proxy", "--config", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 2
    assert got.stderr.splitlines()[1:] == ["  [0].upstream: required: a non-empty string",
                                           "  [0]: unknown keys ['colour']; allowed: name, listen, upstream, enabled"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "maildrill", "proxy", "--port", str(port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 3
    assert f"127.0.0.1:{port} is already in use" in got.stderr


def test_run_with_toxiproxy_server_says_when_there_is_none_on_path(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PATH": str(tmp_path)}  # nothing on PATH: certainly no toxiproxy-server
    got = subprocess.run([sys.executable, "-m", "maildrill", "run", "scenarios/slow-network.yaml",
                          "--toxiproxy-server"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert got.returncode == 2
    assert "--toxiproxy-server: no toxiproxy-server on PATH" in got.stderr
    got = subprocess.run([sys.executable, "-m", "maildrill", "run", "scenarios/slow-network.yaml", "--compose",
                          "--toxiproxy-url", "http://127.0.0.1:1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert got.returncode == 2 and "give one of --toxiproxy-url, --toxiproxy-server and --compose" in got.stderr


@pytest.mark.skipif(shutil.which("toxiproxy-cli") is None,
                    reason="no toxiproxy-cli on PATH: Toxiproxy's own CLI against `maildrill proxy` is not run")
def test_the_stock_toxiproxy_cli_drives_maildrill_proxy(fleet: FleetThread) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "maildrill", "proxy", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        assert proc.stdout.readline() == "ready (uvloop; Ctrl-C to stop)\n"  # uvloop: a regular dependency on Linux

        def cli(*args: str) -> tuple[int, str]:
            got = subprocess.run(["toxiproxy-cli", "-h", url, *args], capture_output=True, text=True, timeout=30,
                                 check=False)
            return got.returncode, (got.stdout + got.stderr).strip()

        upstream = f"127.0.0.1:{fleet.fleet['vendor'].port}"
        assert cli("create", "-l", "127.0.0.1:0", "-u", upstream, "relay") == (0, "Created new proxy relay")
        listen = ToxiproxyAdapter(url).proxy("relay").listen
        assert cli("list") == (0, f"relay\t{listen}\t{upstream}\tenabled\t0")
        assert cli("toxic", "add", "-t", "latency", "-a", "latency=300", "relay") == (
            0, "Added downstream latency toxic 'latency_downstream' on proxy 'relay'")
        assert cli("toxic", "update", "-n", "latency_downstream", "-a", "latency=200", "relay") == (
            0, "Updated toxic 'latency_downstream' on proxy 'relay'")
        assert cli("inspect", "relay")[1].splitlines()[-1].split() == [
            "latency_downstream", "type=latency", "stream=downstream", "toxicity=1.00", "attributes=[", "jitter=0",
            "latency=200", "]"]
        host, port = listen.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=5) as smtp:
            assert smtp.sendmail("app@app.drill.test", ["u7@users.drill.test"], MSG) == {}
        assert cli("toggle", "relay") == (0, "Proxy relay is now disabled")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5)
        code, out = cli("toxic", "add", "-t", "bogus", "relay")
        assert code == 1 and "HTTP 400: invalid toxic type: 'bogus'" in out
        assert cli("delete", "relay") == (0, "Deleted proxy relay")
        assert cli("list")[0] == 0 and not ToxiproxyAdapter(url).proxies()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert accepted(fleet) == ["u7"]
