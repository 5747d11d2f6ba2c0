"""`maildrill mta` as a real subprocess: addresses, real mail through it, events on disk, clean stops, exit codes."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from maildrill.harness.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
MSG = b"Message-ID: <cli-1@app.drill.test>\r\n\r\nhello\r\n"


class Running:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "maildrill", "mta", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:  # ends at EOF if the process dies
            self.lines.append(line.rstrip("\n"))
            if line.startswith("maildrill mta: ready") or time.monotonic() > deadline:
                break
        assert self.lines and self.lines[-1].startswith("maildrill mta: ready"), (self.lines, self.stop())

    def smtp(self) -> dict[str, int]:
        found = (re.match(r"maildrill mta: (\S+) smtp://127\.0\.0\.1:(\d+)", line) for line in self.lines)
        return {m.group(1): int(m.group(2)) for m in found if m}

    def control(self) -> str:
        return next(line.split()[-1] for line in self.lines if line.startswith("maildrill mta: control http"))

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        """Send `sig` once and wait for the exit it asks for (a generous deadline: a loaded machine shuts down
        slowly, and a second signal mid-shutdown would change the exit code being tested)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


def test_standalone_fleet_serves_records_and_stops_on_sigterm(tmp_path: Path):
    events = tmp_path / "events"
    run = Running("--port", "0", "--events", str(events))
    assert run.lines[-1] == "maildrill mta: ready (uvloop; Ctrl-C or SIGTERM stops)"  # uvloop: a regular dependency
    port = run.smtp()["mta"]
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
    with urllib.request.urlopen(f"{run.control()}/mtas", timeout=10) as resp:
        assert [m["name"] for m in json.load(resp)["mtas"]] == ["mta"]
    code, out, err = run.stop()
    assert (code, out, err) == (0, "maildrill mta: stopped\n", "")
    evs = EventStore(events).read()
    assert evs.problems == []
    assert evs.files == [f"mta-{run.proc.pid}.jsonl"]
    kinds = [e.kind for e in evs.events]
    assert kinds[0] == "mta.listener.opened" and kinds[-1] == "mta.listener.closed"
    assert [(e.source, e.corr, e["ack"]) for e in evs.events if e.kind == "mta.message.accepted"] == [
        ("mta/mta", "u1", "sent")]


def test_preset_flag_and_sigint(tmp_path: Path):
    run = Running("--preset", "gmail", "--port", "0")
    port = run.smtp()["gmail"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(200) == b"220 mx.google.com ESMTP a1b2c3d4e5f6 - gsmtp\r\n"
    assert run.stop(signal.SIGINT) == (0, "maildrill mta: stopped\n", "")


def test_bad_config_lists_every_problem_and_exits_2(tmp_path: Path):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("mtas:\n  - name: a\n    behaviors:\n      - {kind: greylist, min_delay_s: -5}\n"
                   "      - {kind: throttle, burst: 0}\n")
    done = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--config", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"maildrill mta: {cfg}: 2 problems",
        "  mtas[0].behaviors[0].min_delay_s = -5: must be >= 0",
        "  mtas[0].behaviors[1].burst = 0: must be >= 1",
    ]


def test_non_loopback_needs_allow_remote_and_a_taken_port_exits_3():
    done = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--host", "0.0.0.0", "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "is not on this machine" in done.stderr and "--allow-remote" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--port", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr == (f"maildrill mta: fake MTA 'mta': 127.0.0.1:{port} is already in use; pick another port, "
                           "or 0 to let the OS choose\n")


def test_processes_share_the_port_and_write_one_events_file_each(tmp_path: Path):
    events = tmp_path / "events"
    run = Running("--port", "0", "--processes", "2", "--events", str(events))
    port = run.smtp()["mta"]
    for i in range(40):
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("a@app.drill.test", [f"u{i}@users.drill.test"], MSG)
    # a behaviour change through the control API reaches every process
    body = json.dumps([{"kind": "reject", "reason": "unknown_user"}]).encode()
    req = urllib.request.Request(f"{run.control()}/mtas/mta/behaviors", data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    for i in range(40, 60):
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo("x")
            client.mail("a@app.drill.test")
            assert client.rcpt(f"u{i}@users.drill.test")[0] == 550
    code, _, err = run.stop()
    assert (code, err) == (0, "")
    evs = EventStore(events).read()
    assert len(evs.files) == 2
    assert evs.problems == []
    accepted = sorted(e.corr for e in evs.events if e.kind == "mta.message.accepted")
    assert accepted == sorted(f"u{i}" for i in range(40))
    changed = [e.source for e in evs.events if e.kind == "mta.behaviors.changed"]
    assert changed == ["mta/mta", "mta/mta"]  # once per process
    rejected = [e for e in evs.events if e.kind == "mta.reply.sent" and e["code"] == 550]
    assert len(rejected) == 20
    # the kernel spread the 60 connections over both processes (all on one: probability 2**-59)
    per_file = [sum(e.kind == "mta.connection.opened" for e in EventStore(events).read([f]).events)
                for f in EventStore(events).files()]
    assert len(per_file) == 2 and min(per_file) > 0 and sum(per_file) == 60


def test_processes_sign_webhooks_with_the_one_key_printed(tmp_path: Path):
    """With --processes 2 each process draws its own ids, but every webhook is signed with the key the first
    process printed (Mailgun's signing key, Resend's whsec_ secret) or the one SNS certificate (SES), whichever
    process accepted the message: 30 sends per vendor on new connections land on both processes."""
    import base64
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from maildrill.fake_mta.vendors.webhooks.ses import string_to_sign
    from svix.webhooks import Webhook

    hits: list[tuple[str, dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    rx = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{rx.server_address[1]}"
    fast = "{distribution: fixed, value_s: 0.01}"
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("".join(f"  - {{name: {n}, api: {n}, port: 0, webhooks: {{url: '{hook}/{n}', events: [delivered], "
                           f"lag_s: {fast}}}}}\n" for n in ("mailgun", "resend", "ses")).join(["vendors:\n", ""]))
    events = tmp_path / "events"
    run = Running("--config", str(cfg), "--processes", "2", "--events", str(events))
    try:
        base = {m.group(1): m.group(2) for m in (re.match(r"maildrill mta: (\S+) (http://\S+)$", line)
                                                  for line in run.lines) if m}
        keys = {m.group(1): m.group(2) for m in (re.match(r"maildrill mta: (\S+) webhooks \S+ verification key "
                                                          r"(\S+)$", line) for line in run.lines) if m}
        assert sorted(keys) == ["mailgun", "resend"]  # SES: a certificate, fetched from SigningCertURL
        n = 30
        for i in range(n):  # requests.post: a new connection each, spread by the kernel over both processes
            assert requests.post(f"{base['mailgun']}/v3/mg.drill.test/messages", auth=("api", "k"), timeout=30,
                                 data={"from": "a@app.drill.test", "to": f"m{i}@users.drill.test", "subject": "s",
                                       "text": "x"}).status_code == 200
            assert requests.post(f"{base['resend']}/emails", headers={"Authorization": "Bearer re_k"}, timeout=30,
                                 json={"from": "a@app.drill.test", "to": [f"r{i}@users.drill.test"], "subject": "s",
                                       "text": "x"}).status_code == 200
            assert requests.post(f"{base['ses']}/v2/email/outbound-emails", timeout=30, json={
                "FromEmailAddress": "a@app.drill.test", "Destination": {"ToAddresses": [f"s{i}@users.drill.test"]},
                "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "x"}}}}},
                headers={"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ses/aws4_request"},
            ).status_code == 200
        deadline = time.monotonic() + 60
        notes = lambda: [h for h in hits if h[0] != "/ses" or json.loads(h[2])["Type"] == "Notification"]  # noqa: E731
        while len(notes()) < 3 * n:
            assert time.monotonic() < deadline, f"{len(notes())} of {3 * n} webhooks after 60 s"
            time.sleep(0.05)
        ses = [json.loads(h[2]) for h in hits if h[0] == "/ses"]
        certs = {requests.get(env["SigningCertURL"], timeout=30).content for env in ses}
    finally:
        code, _, err = run.stop()
        rx.shutdown()
        rx.server_close()
    assert (code, err) == (0, "")
    for path, headers, body in hits:
        if path == "/mailgun":
            sig = json.loads(body)["signature"]
            want = hmac.new(keys["mailgun"].encode(), (sig["timestamp"] + sig["token"]).encode(), hashlib.sha256)
            assert hmac.compare_digest(want.hexdigest(), sig["signature"])
        elif path == "/resend":
            Webhook(keys["resend"]).verify(body, headers)  # raises WebhookVerificationError
    assert len(certs) == 1  # the same certificate, whichever process answered
    cert = x509.load_pem_x509_certificate(certs.pop())
    for env in ses:  # the notifications, and each process's SubscriptionConfirmation
        cert.public_key().verify(base64.b64decode(env["Signature"]), string_to_sign(env), padding.PKCS1v15(),
                                 hashes.SHA256())
    assert {(env["Type"], env.get("Token")) for env in ses if env["Type"] != "Notification"} == {
        ("SubscriptionConfirmation", next(env["Token"] for env in ses if "Token" in env))}
    evs = EventStore(events).read()
    assert len(evs.files) == 2 and evs.problems == []
    per_file = [sum(e.kind == "mta.message.accepted" for e in EventStore(events).read([f]).events)
                for f in EventStore(events).files()]
    assert min(per_file) > 0 and sum(per_file) == 3 * n  # both processes accepted (and signed) some


def test_processes_refuse_an_ses_subscription_confirmed_by_a_visit(tmp_path: Path):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("vendors:\n  - {name: ses, api: ses, port: 0, webhooks: {url: 'http://127.0.0.1:9/h', "
                   "confirm: visit}}\n")
    done = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--config", str(cfg), "--processes", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("maildrill mta: vendors[0].webhooks.confirm = 'visit': with --processes 2 the SUT's "
                           "visit to the SubscribeURL reaches only one of the processes; use confirm: answer, or "
                           "one process\n")


def test_kill_9_loses_nothing_a_client_saw(tmp_path: Path):
    events = tmp_path / "events"
    run = Running("--port", "0", "--events", str(events))
    with smtplib.SMTP("127.0.0.1", run.smtp()["mta"]) as client:
        assert client.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG) == {}
        run.proc.kill()  # SIGKILL right after the client saw the 250
        run.proc.wait(timeout=30)
        run.proc.stdout.close()  # type: ignore[union-attr]
        run.proc.stderr.close()  # type: ignore[union-attr]
    evs = EventStore(events).read().events
    dot = [(e.corr, e["code"]) for e in evs if e.kind == "mta.reply.sent" and e["verb"] == "DOT"]
    assert dot == [("u1", 250)]
    assert [(e.corr, e["ack"]) for e in evs if e.kind == "mta.message.accepted"] == [("u1", "sent")]


def test_events_flush_ms_keeps_every_event_through_a_clean_stop(tmp_path: Path):
    """--events-flush-ms: a vendor's events wait in memory (10 s here, longer than the test) and SIGTERM writes
    them all, in order; a value out of range is a usage error."""
    events = tmp_path / "events"
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"vendors": [{"name": "sg", "api": "sendgrid", "port": 0}]}))
    run = Running("--config", str(fleet), "--events", str(events), "--events-flush-ms", "10000")
    url = next(line.split()[-1] for line in run.lines if line.startswith("maildrill mta: sg http"))
    body = json.dumps({"personalizations": [{"to": [{"email": "u000001@users.drill.test"}]}],
                       "from": {"email": "app@app.drill.test"}, "subject": "s",
                       "content": [{"type": "text/plain", "value": "x"}]}).encode()
    ids = []
    for i in (1, 2):
        req = urllib.request.Request(f"{url}/v3/mail/send", data=body.replace(b"u000001", f"u00000{i}".encode()),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer SG.k"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 202
            ids.append(resp.headers["X-Message-Id"])
    assert run.stop() == (0, "maildrill mta: stopped\n", "")
    evs = EventStore(events).read()
    assert evs.problems == []
    assert [(e.corr, e["message_id"], e["ack"]) for e in evs.events if e.kind == "mta.message.accepted"] == [
        ("u000001", ids[0], "sent"), ("u000002", ids[1], "sent")]
    assert [(e.corr, e["http_status"]) for e in evs.events if e.kind == "mta.reply.sent"] == [
        ("u000001", 202), ("u000002", 202)]
    assert evs.events[-1].kind == "mta.listener.closed"
    done = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--config", str(fleet), "--events-flush-ms",
                           "-5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", "maildrill mta: --events-flush-ms -5: must be between 0 and 10000\n")
