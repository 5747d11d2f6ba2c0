"""Locust workers on "another host": a network namespace of their own (a veth pair to the harness's), their own
time namespace (their monotonic clock is 5000 s ahead of the harness's), their own working directory and a
mount namespace in which the directory holding the run directories is an empty tmpfs. The drill through them
gives the same per-message results as the same drill with local workers, and their events land in the run
directory on the run's clock, within the bound the clock handshake states.

Root and `ip netns` are needed (apt-get install iproute2); without them the test skips, saying why, except
under CI (env CI set), where it fails instead.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from maildrill.harness.analysis import analyze
from maildrill.harness.store import EventStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLOCK_AHEAD_S = 5000  # the workers' CLOCK_MONOTONIC runs this far ahead of the harness's (time namespace)

SCENARIO = """\
version: 1
name: remote-workers
seed: 11
duration_s: 4
drain_timeout_s: 30
mtas:
  - name: primary
    port: {mta_port}
    behaviors:
      # deterministic per recipient: some are refused for good, some greylisted once, the rest accepted
      - {{kind: reject, match_rcpt: "^u0000[0-9][05]@"}}
      - {{kind: greylist, min_delay_s: 0, match_rcpt: "^u0000[0-9][37]@"}}
sut:
  url: http://{sut}
load:
  shape: {{kind: constant, rps: 10}}
  classes:
    - name: otp
      request: {{method: POST, path: /otp, json: {{email: "{{recipient}}"}}}}
"""


def unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: every system component must be present)")
    pytest.skip(why)


def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


class Namespace:
    """A network namespace joined to this one by a veth pair: host side `host_ip`, namespace side `ns_ip`."""

    def __init__(self) -> None:
        n = os.getpid() % 200 + 20
        self.name = f"mdw-{os.getpid()}"
        self.host_if, self.ns_if = f"mdh{os.getpid()}"[:15], f"mdn{os.getpid()}"[:15]
        self.host_ip, self.ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"

    def up(self) -> None:
        steps = [("ip", "netns", "add", self.name),
                 ("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if),
                 ("ip", "link", "set", self.ns_if, "netns", self.name),
                 ("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if),
                 ("ip", "link", "set", self.host_if, "up"),
                 ("ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if),
                 ("ip", "-n", self.name, "link", "set", self.ns_if, "up"),
                 ("ip", "-n", self.name, "link", "set", "lo", "up")]
        for step in steps:
            got = sh(*step)
            if got.returncode != 0:
                raise OSError(f"`{' '.join(step)}` failed: {got.stderr.strip()}")

    def down(self) -> None:
        sh("ip", "netns", "del", self.name)  # takes its end of the veth pair, and so the pair, with it
        if Path(f"/sys/class/net/{self.host_if}").exists():
            sh("ip", "link", "del", self.host_if)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        unavailable("network namespaces need root (run the e2e tests as root)")
    if shutil.which("ip") is None:
        unavailable("`ip` is not installed (apt-get install iproute2, or make system-deps)")
    if shutil.which("unshare") is None:
        unavailable("`unshare` is not installed (util-linux)")
    ns = Namespace()
    try:
        try:
            ns.up()
        except OSError as exc:
            unavailable(f"cannot create a network namespace here: {exc}")
        probe = sh("ip", "netns", "exec", ns.name, "unshare", "--mount", "--time", "--fork",
                   "--monotonic", str(CLOCK_AHEAD_S), sys.executable, "-c", "import time; print(time.monotonic())")
        if probe.returncode != 0:
            unavailable(f"cannot give the workers their own mount and time namespaces: {probe.stderr.strip()}")
        yield ns
    finally:
        ns.down()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listening(host: str, port: int, proc: subprocess.Popen[Any], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"the mailer exited with code {proc.returncode}") from None
            if time.monotonic() >= deadline:
                raise AssertionError(f"nothing listening on {host}:{port} after {timeout_s} s") from None
            time.sleep(0.1)  # poll interval of a deadline-bounded wait


def start_mailer(tmp: Path, host: str, port: int, mta_port: int) -> subprocess.Popen[bytes]:
    """The reference mailer on the host side of the veth pair, relaying to the fleet on loopback."""
    tmp.mkdir(parents=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")},
           "MAILDRILL_SMTP_HOST": "127.0.0.1", "MAILDRILL_SMTP_PORT": str(mta_port)}
    with open(tmp / "mailer.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "maildrill.examples.mailer", "--profile", "hardened",
                                 "--no-idempotency", "--retry", "fixed:1", "--host", host, "--port", str(port),
                                 "--db", str(tmp / "queue.sqlite3")],
                                cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=log)
    wait_listening(host, port, proc)
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_drill(tmp: Path, mta_port: int, sut: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    """The drill against the mailer at `sut` (HOST:PORT on the veth pair: the product needs --allow-remote)."""
    scenario = tmp / f"{out.name}.yaml"
    scenario.write_text(SCENARIO.format(mta_port=mta_port, sut=sut))
    return subprocess.Popen([sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(out), "--quiet",
                             "--allow-remote", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def per_message(run_dir: Path) -> dict[str, tuple[Any, ...]]:
    """Per need: its requests (resend, status, ok), how often it was accepted, and every SMTP reply code it got."""
    events = EventStore(run_dir / "events").events()
    out: dict[str, list[Any]] = collections.defaultdict(lambda: [[], 0, collections.Counter()])
    for e in events:
        if e.corr is None:
            continue
        if e.kind == "load.request.completed":
            out[e.corr][0].append((e["resend"], e["status"], e["ok"]))
        elif e.kind == "mta.message.accepted":
            out[e.corr][1] += 1
        elif e.kind == "mta.reply.sent":
            out[e.corr][2][e["code"]] += 1
    return {c: (tuple(sorted(r)), n, tuple(sorted(codes.items()))) for c, (r, n, codes) in out.items()}


def counts(run_dir: Path) -> dict[str, Any]:
    m = analyze(EventStore(run_dir / "events").events()).metrics
    return {k: m[k] for k in ("messages_requested", "delivered", "undelivered", "duplicates",
                              "permanent_failures_retried")}


def only_run_dir(out: Path) -> Path:
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    return run


def test_workers_in_another_namespace_give_the_same_per_message_results_as_local_ones(
        tmp_path: Path, netns: Namespace) -> None:
    mta_port = free_port("127.0.0.1")

    # 1. two local workers
    sut_port = free_port(netns.host_ip)
    mailer = start_mailer(tmp_path / "mailer-local", netns.host_ip, sut_port, mta_port)
    try:
        local = run_drill(tmp_path, mta_port, f"{netns.host_ip}:{sut_port}", tmp_path / "local", "--workers", "2")
        _, err = local.communicate(timeout=240)
    finally:
        stop(mailer)
    assert local.returncode == 0, err
    local_run = only_run_dir(tmp_path / "local")

    # 2. two workers in the namespace, joining a master that listens on the host side of the veth pair
    out = tmp_path / "remote"
    out.mkdir()
    sut_port = free_port(netns.host_ip)
    master_port = free_port(netns.host_ip)
    mailer = start_mailer(tmp_path / "mailer-remote", netns.host_ip, sut_port, mta_port)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        drill = run_drill(tmp_path, mta_port, f"{netns.host_ip}:{sut_port}", out, "--expect-workers", "2",
                          "--master-bind", f"{netns.host_ip}:{master_port}", "--worker-wait", "90")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")}
        for i in range(2):
            home = Path(tempfile.mkdtemp(prefix=f"worker{i}-", dir=tmp_path))
            # the runs' directory is an empty tmpfs in the worker's mount namespace: it cannot read or write it
            script = ('mount -t tmpfs none "$1" && test -z "$(ls -A "$1")" && shift && exec "$@"')
            with open(home / "worker.log", "wb") as log:
                workers.append(subprocess.Popen(
                    ["ip", "netns", "exec", netns.name, "unshare", "--mount", "--time", "--fork",
                     "--monotonic", str(CLOCK_AHEAD_S), "sh", "-c", script, "sh", str(out),
                     sys.executable, "-m", "maildrill", "worker", "--master", f"{netns.host_ip}:{master_port}"],
                    cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT))
        _, err = drill.communicate(timeout=300)
        for w in workers:
            w.wait(60)
    finally:
        for w in workers:
            stop(w)
        stop(mailer)
    assert drill.returncode == 0, err
    assert [w.returncode for w in workers] == [0, 0]
    remote_run = only_run_dir(out)

    # the same drill, message for message
    want = per_message(local_run)
    assert len([c for c, v in want.items() if v[0]]) == 40
    assert per_message(remote_run) == want
    assert counts(remote_run) == counts(local_run) == {
        "messages_requested": 40, "delivered": 32, "undelivered": 8, "duplicates": 0,
        "permanent_failures_retried": 0}
    manifest = json.loads((remote_run / "manifest.json").read_text())
    assert (manifest["status"], manifest["degraded"]) == ("completed", [])

    # the workers' events were written by the master into the run directory, on the run's clock
    events = EventStore(remote_run / "events").events()
    master = next(e for e in events if e.kind == "load.master.started")
    started = sorted((e for e in events if e.kind == "load.started"), key=lambda e: e["worker"])
    assert [(e.source, e["worker"], e["host"]) for e in started] == [
        ("load/0", 0, socket.gethostname()), ("load/1", 1, socket.gethostname())]
    for e in [*started, *(e for e in events if e.kind == "load.stopped")]:
        # the worker's clock was 5000 s ahead; its estimate of the run's origin is off by at most the bound it states
        error_ms = (e["clock_origin_s"] - CLOCK_AHEAD_S - master["clock_origin_s"]) * 1000
        assert abs(error_ms) <= e["clock_uncertainty_ms"] + 0.002, (error_ms, e.data)
        print(f"{e.source} {e.kind}: clock error {error_ms:+.3f} ms, bound ±{e['clock_uncertainty_ms']:.3f} ms, "
              f"worst bound ±{e['clock_worst_uncertainty_ms']:.3f} ms over {e['clock_pings']} pings")
    reqs = [e for e in events if e.kind == "load.request.completed"]
    load_t0 = next(e["load_t0_s"] for e in events if e.kind == "run.phase.changed" and e["phase"] == "load")
    assert all(e["started_t_s"] >= e["scheduled_t_s"] - 0.01 for e in reqs)  # nobody starts early
    assert all(load_t0 <= e["scheduled_t_s"] < load_t0 + 4 for e in reqs)
    # each request precedes its acceptance by the fleet (stamped by another process, on the harness's clock)
    accepted = {e.corr: e.t_s for e in events if e.kind == "mta.message.accepted"}
    assert all(e["started_t_s"] < accepted[e.corr] for e in reqs if e.corr in accepted)


PATIENCE = """\
version: 1
name: patience-over-the-link
seed: 3
duration_s: 3
drain_timeout_s: 20
mtas:
  - name: primary
    port: {port}
    behaviors: [{{kind: go_dark, mode: blackhole, match_rcpt: "^u00000[13]@"}}]
load:
  shape: {{kind: burst, count: 4, at_s: 0}}
  classes:
    - name: otp
      ttl_s: 30
      resend_after_s: 1
      max_resends: 2
      smtp: {{host: 127.0.0.1, port: {port}}}
"""


def test_deliveries_reach_the_worker_that_sent_the_need_so_its_patient_users_stop_resending(tmp_path: Path) -> None:
    # the fake MTA is the SMTP target; it swallows u000001 and u000003 (blackhole) and accepts the others. The
    # master tails the fleet's events and tells the worker that sent each need; the two it accepted are never
    # asked for again, the two swallowed are asked twice more. One worker is local, one is `maildrill worker`
    # in its own directory with no maildrill variable (a remote one, as far as the run can tell).
    port = free_port("127.0.0.1")
    master_port = free_port("127.0.0.1")
    scenario = tmp_path / "patience.yaml"
    scenario.write_text(PATIENCE.format(port=port))
    drill = subprocess.Popen([sys.executable, "-m", "maildrill", "run", str(scenario), "--out", str(tmp_path / "r"),
                              "--quiet", "--workers", "1", "--expect-workers", "1",
                              "--master-bind", f"127.0.0.1:{master_port}"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    home = tmp_path / "remote-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDRILL_")}
    with open(home / "worker.log", "wb") as log:
        remote = subprocess.Popen([sys.executable, "-m", "maildrill", "worker", "--master", f"127.0.0.1:{master_port}"],
                                  cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _, err = drill.communicate(timeout=180)
        remote.wait(60)
    finally:
        stop(remote)
        stop(drill)
    assert drill.returncode == 0, err
    assert remote.returncode == 0
    run_dir = only_run_dir(tmp_path / "r")
    events = EventStore(run_dir / "events").events()
    requests = sorted((e.corr, e["resend"], e["status"], e.source) for e in events
                      if e.kind == "load.request.completed")
    owner = {c: f"load/{int(c[1:]) % 2}" for c in (f"u{k:06d}" for k in range(4))}
    assert requests == sorted([("u000000", 0, 250, owner["u000000"]), ("u000002", 0, 250, owner["u000002"])] +
                              [(c, r, 250, owner[c]) for c in ("u000001", "u000003") for r in range(3)])
    assert sorted(e.corr for e in events if e.kind == "mta.message.accepted") == ["u000000", "u000002"]
    stopped = {e.source: e["skipped_resends"] for e in events if e.kind == "load.stopped"}
    assert stopped == {"load/0": 2, "load/1": 0}  # worker 0's two needs were delivered: their resends skipped
    hosts = {e.source: e["pid"] for e in events if e.kind == "load.started"}
    assert remote.pid in hosts.values()
