"""HTTP email-API throughput: the fake vendors against nginx, a bare aiohttp handler and moto, all driven by wrk.

Needs `wrk` and `nginx` (Debian/Ubuntu: ``apt-get install wrk nginx``) and moto's server mode
(``pip install 'moto[server]'``, in the dev extras). Every server runs in its own process on a loopback port;
each is checked to answer one real send with its success status before it is measured, and any wrk run that
saw a non-success response exits 3 (a server answering errors would "measure" its error path).

    .venv/bin/python benchmarks/api_throughput.py [--duration 3] [--rounds 3] [--connections 1 50] [--processes 2]

Servers: nginx answering 202 (the limit anchor), a bare aiohttp handler reading the body and answering 202 (the
same HTTP library as the fakes), moto's server answering SES v1 SendEmail (the Python SES mock a user would pick
instead), and `maildrill mta --config` serving the fake sendgrid and ses vendors, recording every event to disk
(plus the sendgrid vendor again with --events-flush-ms MS, its events written in one write every MS, and with
--processes N). Prints requests/s per server and connection count and the
ratios the targets are stated in: fake sendgrid >= 0.8x the bare handler, fake ses >= 2x moto, N processes > 1.
It also prints each server's CPU time per request and CPU share (its processes summed, from /proc): the share
says whether a server was limited by its own work or by what the machine left it (wrk, other processes), and
whether N processes got more CPU than one; the kernel spreads connections, not requests, over the N processes,
so with one connection only one of them works. wrk's own CPU use and the machine's idle CPU during each run
are printed too: N processes can only raise requests/s while a core is idle, and on a 2-core machine wrk
itself takes most of one; requests per CPU-second (N processes against one) says what each costs apart
from the cores the machine had to give.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

SG_BODY = json.dumps({"personalizations": [{"to": [{"email": "u000001@users.drill.test"}]}],
                      "from": {"email": "app@app.drill.test"}, "subject": "Your code",
                      "content": [{"type": "text/plain", "value": "123456"}]})
SES_BODY = urllib.parse.urlencode({"Action": "SendEmail", "Version": "2010-12-01", "Source": "app@app.drill.test",
                                   "Destination.ToAddresses.member.1": "u000001@users.drill.test",
                                   "Message.Subject.Data": "Your code", "Message.Body.Text.Data": "123456"})
SES_AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDBENCH/20261201/us-east-1/ses/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00")
SG = {"path": "/v3/mail/send", "body": SG_BODY, "headers": {"Content-Type": "application/json",
                                                            "Authorization": "Bearer SG.bench"}}
SES = {"path": "/", "body": SES_BODY, "headers": {"Content-Type": "application/x-www-form-urlencoded",
                                                  "Authorization": SES_AUTH, "X-Amz-Date": "20261201T000000Z"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_bare(port: int) -> None:
    """The baseline: aiohttp's low-level server (as the fakes use), read the body, answer 202, record nothing."""
    import asyncio

    from aiohttp import web

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def main() -> None:
        server = web.Server(handler, access_log=None)
        await asyncio.get_running_loop().create_server(server, "127.0.0.1", port, backlog=1024)
        await asyncio.Event().wait()

    asyncio.run(main())


def send_once(port: int, req: dict, what: str, want: int, proc: subprocess.Popen[bytes],
              timeout_s: float = 30.0) -> None:
    """Fail loudly unless the server answers one real request with `want`."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"FATAL: {what} exited with code {proc.returncode} before answering")
        r = urllib.request.Request(f"http://127.0.0.1:{port}{req['path']}", data=req["body"].encode(),
                                   headers=req["headers"], method="POST")
        try:
            with urllib.request.urlopen(r, timeout=5) as resp:
                if resp.status == want:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)  # polling a deadline-bounded readiness check
    raise SystemExit(f"FATAL: {what} did not answer {want} on 127.0.0.1:{port} ({last})")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live descendants (nginx's worker, the
    `--processes` workers): what a server spent, whatever else the shared machine was doing."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def machine_idle_s() -> float:
    """Idle CPU seconds of the whole machine so far, all cores summed (/proc/stat's idle + iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, req: dict, connections: int, duration: float, tmp: Path, what: str,
        pid: int) -> tuple[float, float, float, float, float]:
    """(requests/s, the server's CPU microseconds per request, its CPU use in % of one core, wrk's CPU use and the
    machine's idle CPU in % of one core) of one wrk run."""
    script = tmp / "req.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(req['body'])}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in req["headers"].items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if connections == 1 else 2
    cpu0, t0 = tree_cpu_s(pid), time.monotonic()
    idle0, kids0 = machine_idle_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "-s",
                          str(script), f"http://127.0.0.1:{port}{req['path']}"], capture_output=True, text=True,
                         check=True).stdout
    cpu = tree_cpu_s(pid) - cpu0
    wall = time.monotonic() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk: the only child waited for meanwhile
    wrk_cpu = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
    idle = machine_idle_s() - idle0
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"FATAL: {what}: wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise SystemExit(f"FATAL: {what}: no Requests/sec in wrk's output:\n{out}")
    n = re.search(r"(\d+) requests in", out)
    if n is None or int(n.group(1)) == 0:
        raise SystemExit(f"FATAL: {what}: no request count in wrk's output:\n{out}")
    return float(m.group(1)), cpu * 1e6 / int(n.group(1)), 100 * cpu / wall, 100 * wrk_cpu / wall, 100 * idle / wall


def start_nginx(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 202; }}
  }}
}}
""")
    return subprocess.Popen([shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_moto(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def verify_moto_sender(port: int) -> None:
    import boto3

    ses = boto3.client("ses", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="AKIDBENCH", aws_secret_access_key="secret")
    ses.verify_email_identity(EmailAddress="app@app.drill.test")


def start_fake(tmp: Path, api: str, processes: int, suffix: str = "",
               flush_ms: float = 0.0) -> tuple[subprocess.Popen[str], int, Path]:
    port = free_port()
    events = tmp / f"events-{api}-{processes}{suffix}"
    fleet = tmp / f"fleet-{api}{suffix}.json"
    fleet.write_text(json.dumps({"vendors": [{"name": api, "api": api, "port": port}]}))
    cmd = [sys.executable, "-m", "maildrill", "mta", "--config", str(fleet), "--events", str(events),
           "--processes", str(processes), "--events-flush-ms", repr(flush_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"FATAL: maildrill mta ({api}) exited before ready")
        if "ready" in line:
            return proc, port, events
    raise SystemExit(f"FATAL: maildrill mta ({api}) not ready in 60 s")


def event_count(events: Path, kind: str) -> int:
    n = 0
    for f in (events.glob("*.jsonl") if events.is_dir() else [events]):
        with f.open(encoding="utf-8") as fh:
            n += sum(f'"kind": "{kind}"' in line or f'"kind":"{kind}"' in line for line in fh)
    return n


def stop(proc: subprocess.Popen, *, group: bool = False) -> None:
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--processes", type=int, default=2, help="processes for the scaled fake sendgrid (default 2)")
    ap.add_argument("--flush-ms", type=float, default=20.0,
                    help="also measure the fake sendgrid with --events-flush-ms MS (default 20; 0: not)")
    ap.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"FATAL: {tool} is not on PATH (apt-get install {tool})")
    samples: dict[str, dict[int, list[float]]] = {}
    cpu_us: dict[str, dict[int, list[float]]] = {}
    cpu_pct: dict[str, dict[int, list[float]]] = {}
    wrk_pct: dict[str, dict[int, list[float]]] = {}
    idle_pct: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="maildrill-api-bench-") as tmp_s:
        tmp = Path(tmp_s)
        servers: list[tuple[str, subprocess.Popen, int, dict, bool, Path | None]] = []
        try:
            port = free_port()
            servers.append(("nginx 202", start_nginx(tmp, port), port, SG, False, None))
            port = free_port()
            bare = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port)])
            servers.append(("bare aiohttp 202", bare, port, SG, False, None))
            port = free_port()
            moto = start_moto(port)
            servers.append(("moto SES v1", moto, port, SES, False, None))
            deadline = time.monotonic() + 60
            while True:
                try:
                    verify_moto_sender(port)
                    break
                except Exception:
                    if time.monotonic() > deadline or moto.poll() is not None:
                        raise SystemExit("FATAL: moto server did not start") from None
                    time.sleep(0.2)  # polling a deadline-bounded readiness check
            proc, port, ev = start_fake(tmp, "sendgrid", 1)
            servers.append(("fake sendgrid", proc, port, SG, True, ev))
            proc, port, ev = start_fake(tmp, "ses", 1)
            servers.append(("fake ses v1", proc, port, SES, True, ev))
            if args.flush_ms:
                proc, port, ev = start_fake(tmp, "sendgrid", 1, suffix="-buffered", flush_ms=args.flush_ms)
                servers.append((f"fake sendgrid {args.flush_ms:g}ms", proc, port, SG, True, ev))
            if args.processes > 1:
                proc, port, ev = start_fake(tmp, "sendgrid", args.processes, suffix="-x")
                servers.append((f"fake sendgrid x{args.processes}", proc, port, SG, True, ev))
            for name, proc, port, req, _, _ in servers:
                send_once(port, req, name, 202 if req is SG else 200, proc)
            # interleaved rounds: every server measured in each round, medians reported, so that the
            # machine's drift (it is shared) hits every server alike
            for r in range(args.rounds):
                for c in args.connections:
                    for name, proc, port, req, _, _ in servers:
                        rps, us, pct, wpct, ipct = wrk(port, req, c, args.duration, tmp, f"{name} c={c}", proc.pid)
                        wrk_pct.setdefault(name, {}).setdefault(c, []).append(wpct)
                        idle_pct.setdefault(name, {}).setdefault(c, []).append(ipct)
                        samples.setdefault(name, {}).setdefault(c, []).append(rps)
                        cpu_us.setdefault(name, {}).setdefault(c, []).append(us)
                        cpu_pct.setdefault(name, {}).setdefault(c, []).append(pct)
                print(f"  round {r + 1}/{args.rounds} done", flush=True)
            for name, _, _, _, _, ev in servers:
                if ev is not None:  # one file per process: how SO_REUSEPORT spread the connections
                    per = [event_count(f, "mta.message.accepted") for f in sorted(ev.glob("*.jsonl"))]
                    print(f"  {name}: {sum(per)} mta.message.accepted events recorded"
                          + (f" ({' + '.join(map(str, per))} by its {len(per)} processes)" if len(per) > 1 else ""),
                          flush=True)
        finally:
            for _, proc, _, _, group, _ in servers:
                stop(proc, group=group)
    results = {name: {c: statistics.median(v) for c, v in row.items()} for name, row in samples.items()}
    us = {name: {c: statistics.median(v) for c, v in row.items()} for name, row in cpu_us.items()}
    pct = {name: {c: statistics.median(v) for c, v in row.items()} for name, row in cpu_pct.items()}
    wpct = {name: {c: statistics.median(v) for c, v in row.items()} for name, row in wrk_pct.items()}
    ipct = {name: {c: statistics.median(v) for c, v in row.items()} for name, row in idle_pct.items()}
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"

    cols = args.connections
    print(f"\nrequests/s, median of {args.rounds} interleaved rounds of {args.duration:g} s (wrk, keep-alive; "
          "the machine may be shared: compare ratios within this run)")
    print(f"{'server':<24}" + "".join(f"{f'c={c}':>12}" for c in cols))
    for name, row in results.items():
        print(f"{name:<24}" + "".join(f"{row[c]:>12.0f}" for c in cols))
    print(f"\nthe server's CPU time per request in microseconds (its processes summed) / its CPU use in % of one core "
          f"({os.cpu_count()} cores; load average at the end {load})")
    print(f"{'server':<24}" + "".join(f"{f'c={c}':>16}" for c in cols))
    for name in results:
        print(f"{name:<24}" + "".join(f"{f'{us[name][c]:.0f} / {pct[name][c]:.0f}%':>16}" for c in cols))
    print(f"\nwrk's own CPU use / the machine's idle CPU during the run, in % of one core ({os.cpu_count()} cores: "
          f"{100 * (os.cpu_count() or 1)}% in all; what neither wrk, the server nor other work used)")
    print(f"{'server':<24}" + "".join(f"{f'c={c}':>16}" for c in cols))
    for name in results:
        print(f"{name:<24}" + "".join(f"{f'{wpct[name][c]:.0f}% / {ipct[name][c]:.0f}%':>16}" for c in cols))
    print()
    for c in cols:
        sg, bare_r = results["fake sendgrid"][c], results["bare aiohttp 202"][c]
        ses, moto_r = results["fake ses v1"][c], results["moto SES v1"][c]
        line = (f"c={c}: fake sendgrid / bare aiohttp = {sg / bare_r:.2f}x (target >= 0.8x); "
                f"fake ses / moto = {ses / moto_r:.2f}x (target >= 2x); "
                f"fake sendgrid / nginx = {sg / results['nginx 202'][c]:.2f}x")
        scaled = results.get(f"fake sendgrid x{args.processes}")
        if scaled:
            line += f"; x{args.processes} processes / 1 = {scaled[c] / sg:.2f}x"
            if c == 1:
                line += " (one connection is served by one process: no gain is possible)"
        buffered = results.get(f"fake sendgrid {args.flush_ms:g}ms")
        if buffered:
            line += (f"; with --events-flush-ms {args.flush_ms:g}: {buffered[c] / bare_r:.2f}x the bare handler "
                     f"(target >= 0.8x)")
        print(line)
        line = (f"c={c}: CPU per request, fake sendgrid / bare aiohttp = "
                f"{us['fake sendgrid'][c] / us['bare aiohttp 202'][c]:.2f}x")
        if buffered:
            line += (f" ({us[f'fake sendgrid {args.flush_ms:g}ms'][c] / us['bare aiohttp 202'][c]:.2f}x "
                     "with buffered events)")
        if scaled:
            name = f"fake sendgrid x{args.processes}"
            line += (f"; x{args.processes} used {pct[name][c]:.0f}% of a core against {pct['fake sendgrid'][c]:.0f}% "
                     f"for one process, with {ipct[name][c]:.0f}% of a core idle on the machine; requests per "
                     f"CPU-second x{args.processes} / 1 = {us['fake sendgrid'][c] / us[name][c]:.2f}x")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
