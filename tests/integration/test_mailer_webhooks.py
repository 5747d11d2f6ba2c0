"""The reference mailer's webhook endpoint: a fake vendor's real delivery webhooks (each vendor's own format)
update the mailer's delivery records by the vendor's message id; bad posts are refused with a clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from maildrill.examples.mailer.transports import APIS
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.testing import FleetThread
from maildrill.harness.store import EventStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait(cond: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def up(url: str) -> bool:
    try:
        return call(url)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("api", APIS)
def test_delivery_webhooks_update_the_record_by_the_vendors_message_id(api: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hooks = {"url": f"{base}/hooks/v", "events": ["delivered"], "lag_s": {"distribution": "fixed", "value_s": 0.2}}
    with FleetThread(FleetSpec(vendors=[VendorSpec(name="v", api=api, webhooks=hooks)]), control=False) as fleet:
        env = {**os.environ, "MAILDRILL_API_V_URL": fleet["v"].base_url}
        cmd = [sys.executable, "-m", "maildrill.examples.mailer", "--transport", api, "--primary", "v", "--port",
               str(port), "--db", str(tmp_path / "q.sqlite3"), "--profile", "hardened", "--seed", "1"]
        mailer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait(lambda: up(f"{base}/healthz"), "the mailer to listen")
            ids = [call(f"{base}/otp", {"email": f"u{n}@users.drill.test"})[1]["id"] for n in range(3)]
            wait(lambda: all(call(f"{base}/messages/{i}")[1]["webhook"] == "delivered" for i in ids),
                 "a delivered webhook for each message")
            records = [call(f"{base}/messages/{i}")[1] for i in ids]
            bad = call(f"{base}/hooks/v", raw=b"[not json")
            nobody = call(f"{base}/hooks/elsewhere", [])
        finally:
            mailer.terminate()
            _, stderr = mailer.communicate(timeout=30)
    assert [(r["state"], r["vendor"], r["webhook"]) for r in records] == [("sent", "v", "delivered")] * 3
    applied = [line for line in stderr.splitlines() if line.startswith("mailer: webhook vendor=v ")]
    assert sorted(line.split(" message=")[1].split()[0] for line in applied) == sorted(map(str, ids))
    assert all(line.endswith(" event=delivered applied") for line in applied)
    assert bad[0] == 400 and bad[1]["error"].startswith(f"POST /hooks/v: not a {api} webhook: not JSON")
    assert nobody == (404, {"error": "POST /hooks/elsewhere: no API vendor 'elsewhere'",
                            "fix": "the mailer's API vendors: ['v']"})


@pytest.mark.parametrize("ignore_late", [True, False])
def test_after_a_failover_on_silence_the_late_webhook_of_the_old_vendor_is_ignored_or_applied(
    ignore_late: bool, tmp_path: Path
) -> None:
    """SendGrid accepts but holds its webhooks; after 1 s of silence the mailer sends again via SES (which then
    owns the message); when the held webhook finally comes, a hardened mailer marks it late, a naive one applies it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hooks = {"url": f"{base}/hooks/primary", "events": ["delivered"], "lag_s": {"distribution": "fixed",
                                                                              "value_s": 0.1}}
    spec = FleetSpec(vendors=[
        VendorSpec(name="primary", api="sendgrid", webhooks=hooks, behaviors=[{"kind": "webhook_pause"}]),
        VendorSpec(name="backup", api="ses")])
    with FleetThread(spec, control=False) as fleet:
        env = {**os.environ, "MAILDRILL_API_PRIMARY_URL": fleet["primary"].base_url,
               "MAILDRILL_API_BACKUP_URL": fleet["backup"].base_url, "MAILDRILL_RUN_DIR": str(tmp_path)}
        cmd = [sys.executable, "-m", "maildrill.examples.mailer", "--transport", "sendgrid", "--primary", "primary",
               "--failover-to", "backup", "--backup-transport", "ses", "--failover-on-silence", "1", "--port",
               str(port), "--db", str(tmp_path / "q.sqlite3"), "--profile", "hardened", "--seed", "1",
               "--ignore-late-webhooks" if ignore_late else "--no-ignore-late-webhooks"]
        mailer = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait(lambda: up(f"{base}/healthz"), "the mailer to listen")
            msg = call(f"{base}/otp", {"email": "u1@users.drill.test"})[1]["id"]
            wait(lambda: call(f"{base}/messages/{msg}")[1]["vendor"] == "backup", "the failover on silence")
            fleet.set_behaviors("primary", [])  # the held webhook goes out now: late
            fleet.wait_for(lambda evs: any(e["kind"] == "mta.webhook.answered" for e in evs), 30,
                           what="the mailer's answer to the held webhook")
            record = call(f"{base}/messages/{msg}")[1]
        finally:
            mailer.terminate()
            _, stderr = mailer.communicate(timeout=30)
    hooks_seen = [line.split(" event=")[1] for line in stderr.splitlines() if line.startswith("mailer: webhook ")]
    assert hooks_seen == (["delivered late"] if ignore_late else ["delivered applied (owner backup)"])
    assert (record["state"], record["vendor"], record["webhook"]) == (
        "sent", "backup", None if ignore_late else "delivered")
    sent = [line for line in stderr.splitlines() if " outcome=sent " in line]
    assert [line.split(" vendor=")[1].split()[0] for line in sent] == ["primary", "backup"]
    # the decision, as the drill's analysis reads it: one event in the run directory's events/sut-mailer.jsonl
    decisions = EventStore(tmp_path / "events").events()
    vendor_id = stderr.split("mailer: webhook vendor=primary vendor_id=")[1].split()[0]
    assert [(e.source, e.kind, e.corr, e.data) for e in decisions] == [
        ("sut/mailer", "sut.webhook.ignored" if ignore_late else "sut.webhook.applied", "u1",
         {"vendor": "primary", "message_id": vendor_id, "owner": "backup", "late": True, "event": "delivered"})]
