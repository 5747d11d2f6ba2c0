"""The fleet's HTTP control API on a real socket: behaviours, reset, message status, metrics, token, timeline."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from typing import Any

import pytest
from maildrill.fake_mta.clock import FakeClock
from maildrill.fake_mta.config import ControlSpec, FleetSpec, MTASpec
from maildrill.fake_mta.fleet import Fleet
from maildrill.fake_mta.testing import FleetThread, WireClient

MSG = b"Message-ID: <otp-9@app.drill.test>\r\n\r\n123456\r\n"


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, (json.loads(raw) if ctype.startswith("application/json") else raw.decode())


def fleet_of(*mtas: MTASpec, clock: FakeClock | None = None, control: ControlSpec | None = None) -> FleetThread:
    return FleetThread(FleetSpec(mtas=list(mtas), control=control or ControlSpec()), clock=clock)


def test_get_put_behaviors_reset_and_errors():
    clock = FakeClock()
    with fleet_of(MTASpec(name="primary"), MTASpec(name="backup", preset="ses"), clock=clock) as fleet:
        base = fleet.control_url
        assert base is not None
        status, body = call(f"{base}/mtas")
        assert status == 200
        ports = {m["name"]: m["port"] for m in body["mtas"]}
        assert body["mtas"][0] == {"name": "primary", "host": "127.0.0.1", "port": fleet["primary"].port,
                                   "preset": None, "listening": True, "connections_open": 0, "behaviors": []}
        assert ports["backup"] == fleet["backup"].port
        greylist = [{"kind": "greylist", "min_delay_s": 60}]
        status, body = call(f"{base}/mtas/primary/behaviors", "PUT", greylist)
        assert (status, body) == (200, {"behaviors": [{"kind": "greylist", "probability": 1.0, "min_delay_s": 60.0,
                                                        "retry_window_s": 172800.0, "whitelist_s": 3024000.0}]})
        assert call(f"{base}/mtas/primary/behaviors")[1] == body
        with WireClient(fleet["primary"].port) as c:
            c.reply()
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@x.test>")
            assert c.cmd("RCPT TO:<u1@users.drill.test>")[0][:3] == "450"
            clock.advance(60)
            assert c.cmd("RCPT TO:<u1@users.drill.test>") == ["250 OK"]  # passed, whitelisted
            assert call(f"{base}/mtas/primary/reset", "POST") == (200, {"reset": True, "name": "primary"})
            assert c.cmd("RCPT TO:<u1@users.drill.test>")[0][:3] == "450"  # forgotten by reset
        status, body = call(f"{base}/mtas/primary/behaviors", "PUT",
                            {"behaviors": [{"kind": "throttle", "burst": 0}, {"kind": "go_dark"}]})
        assert status == 400
        assert body == {"error": "2 problem(s) in the behaviour list", "status": 400, "problems": [
            "behaviors[0].burst = 0: must be >= 1", "behaviors[1].mode: required; add it"]}
        assert call(f"{base}/mtas/nope/behaviors")[0] == 404
        assert call(f"{base}/mtas/primary/behaviors", "POST", [])[0] == 405
        assert call(f"{base}/elsewhere")[0] == 404
        kinds = [(e["source"], e["kind"], e.get("by")) for e in fleet.events()
                 if e["kind"] in ("mta.behaviors.changed", "mta.reset")]
    assert kinds == [("mta/primary", "mta.behaviors.changed", "api"), ("mta/primary", "mta.reset", "api")]


def test_message_status_lookup_is_the_fake_vendors_delivery_api():
    with fleet_of(MTASpec(name="vendor", behaviors=[{"kind": "go_dark", "mode": "lose_ack"}])) as fleet:
        with pytest.raises(smtplib.SMTPServerDisconnected), smtplib.SMTP("127.0.0.1", fleet["vendor"].port) as s:
            s.sendmail("a@app.drill.test", ["u1@users.drill.test"], MSG)
        fleet.wait_for(lambda evs: any(e["kind"] == "mta.message.accepted" for e in evs), 30, what="accepted")
        t_s = fleet.events(kind="mta.message.accepted")[0]["t_s"]
        status, body = call(f"{fleet.control_url}/mtas/vendor/messages/otp-9@app.drill.test")
        assert status == 200
        assert body["t_s"] == pytest.approx(t_s, abs=0.05)
        assert {k: v for k, v in body.items() if k != "t_s"} == {"message_id": "otp-9@app.drill.test",
                                                                  "accepted": True, "ack": "lost"}
        assert call(f"{fleet.control_url}/mtas/vendor/messages/%3Cotp-9%40app.drill.test%3E")[0] == 200
        assert call(f"{fleet.control_url}/mtas/vendor/messages/other@app.drill.test") == (404, {
            "error": "MTA 'vendor' accepted no message with Message-ID 'other@app.drill.test'", "status": 404,
            "accepted": False})


def test_metrics_in_prometheus_text_format():
    with fleet_of(MTASpec(name="a"), MTASpec(name="b", behaviors=[{"kind": "reject"}])) as fleet:
        with smtplib.SMTP("127.0.0.1", fleet["a"].port) as s:
            s.sendmail("x@app.drill.test", ["u1@users.drill.test"], MSG)
        with smtplib.SMTP("127.0.0.1", fleet["b"].port) as s, pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@app.drill.test", ["u1@users.drill.test"], MSG)
        fleet.wait_for(lambda evs: sum(e["kind"] == "mta.connection.closed" for e in evs) == 2, 30, what="closes")
        status, text = call(f"{fleet.control_url}/metrics")
    assert status == 200
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == [
        'maildrill_mta_up{mta="a"} 1', 'maildrill_mta_up{mta="b"} 1',
        'maildrill_mta_connections_total{mta="a"} 1', 'maildrill_mta_connections_total{mta="b"} 1',
        'maildrill_mta_connections_open{mta="a"} 0', 'maildrill_mta_connections_open{mta="b"} 0',
        'maildrill_mta_replies_total{mta="a",code="220"} 1', 'maildrill_mta_replies_total{mta="a",code="221"} 1',
        'maildrill_mta_replies_total{mta="a",code="250"} 4', 'maildrill_mta_replies_total{mta="a",code="354"} 1',
        'maildrill_mta_replies_total{mta="b",code="220"} 1', 'maildrill_mta_replies_total{mta="b",code="221"} 1',
        'maildrill_mta_replies_total{mta="b",code="250"} 3', 'maildrill_mta_replies_total{mta="b",code="550"} 1',
        'maildrill_mta_messages_accepted_total{mta="a"} 1', 'maildrill_mta_messages_accepted_total{mta="b"} 0',
        'maildrill_mta_messages_discarded_total{mta="a"} 0', 'maildrill_mta_messages_discarded_total{mta="b"} 0',
        'maildrill_mta_acks_lost_total{mta="a"} 0', 'maildrill_mta_acks_lost_total{mta="b"} 0',
        'maildrill_mta_protocol_errors_total{mta="a"} 0', 'maildrill_mta_protocol_errors_total{mta="b"} 0',
    ]
    assert "# TYPE maildrill_mta_replies_total counter" in text.splitlines()


def test_a_token_is_required_when_one_is_set():
    with fleet_of(MTASpec(name="a"), control=ControlSpec(token="t0ken")) as fleet:
        assert call(f"{fleet.control_url}/mtas")[0] == 401
        assert call(f"{fleet.control_url}/mtas", token="wrong")[0] == 401
        assert call(f"{fleet.control_url}/mtas", token="t0ken")[0] == 200


def test_non_loopback_needs_allow_remote_and_then_a_generated_token():
    with pytest.raises(ValueError, match="not loopback"):
        Fleet(FleetSpec(mtas=[MTASpec(name="a", host="0.0.0.0")]))
    with pytest.raises(ValueError, match=r"control API host '0\.0\.0\.0' is not loopback"):
        Fleet(FleetSpec(mtas=[MTASpec(name="a")], control=ControlSpec(host="0.0.0.0")))
    fleet = Fleet(FleetSpec(mtas=[MTASpec(name="a")], control=ControlSpec(host="0.0.0.0")), allow_remote=True)
    assert fleet.control_token is not None and len(fleet.control_token) >= 24


def test_timeline_switches_behaviours_at_their_times():
    phases = [{"at_s": 0.2, "behaviors": [{"kind": "tempfail", "code": 452}]}, {"at_s": 0.4, "behaviors": []}]
    with fleet_of(MTASpec(name="a", timeline=phases)) as fleet:
        evs = fleet.wait_for(lambda evs: len([e for e in evs if e["kind"] == "mta.behaviors.changed"]) == 2, 30,
                             what="two timeline phases")
        changes = [(e["by"], json.loads(e["behaviors"])) for e in evs if e["kind"] == "mta.behaviors.changed"]
        opened = next(e["t_s"] for e in evs if e["kind"] == "mta.listener.opened")
        first = next(e["t_s"] for e in evs if e["kind"] == "mta.behaviors.changed")
    assert changes == [("timeline", [{"kind": "tempfail", "probability": 1.0, "code": 452}]), ("timeline", [])]
    assert first - opened >= 0.2
