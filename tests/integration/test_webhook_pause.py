"""The silent vendor: a `webhook_pause` set through the fleet control API (the path timelines use) stops the
webhooks while sends are still accepted; `hold` releases them when it ends (late webhooks), `drop` loses them.
A path-only webhooks.url resolves against the SUT base URL the fleet is given."""

from __future__ import annotations

import asyncio

import aiohttp
from maildrill.fake_mta.config import FleetSpec, VendorSpec
from maildrill.fake_mta.fleet import Fleet
from webhook_support import Receiver, send, wait_for


def wh(evs: list[dict]) -> list[tuple]:
    return [(e["kind"], e["rcpt"], e.get("attempt"), e.get("reason")) for e in evs
            if e["kind"].startswith("mta.webhook.")]


def test_pause_hold_then_release_and_pause_drop_through_the_control_api():
    async def main():
        async with Receiver() as rx:
            spec = FleetSpec(vendors=[VendorSpec(name="sg", api="sendgrid", webhooks={
                "url": "/hooks/sendgrid", "lag_s": {"distribution": "fixed", "value_s": 0}})])
            async with Fleet(spec, webhook_base_url=rx.url) as fleet, aiohttp.ClientSession() as s:
                v = fleet["sg"]
                evs = fleet.recorder.events
                put = f"{fleet.control_url}/vendors/sg/behaviors"
                await send(s, v, ["u1@users.test"])
                await wait_for(lambda: len(rx.hits) == 1, what="u1's webhook")
                r = await s.put(put, json=[{"kind": "webhook_pause", "mode": "hold"}])
                assert r.status == 200, await r.text()
                await send(s, v, ["u2@users.test"])  # still accepted: 202
                await wait_for(lambda: any(e["kind"] == "mta.webhook.held" for e in evs), what="u2 held")
                held = (await (await s.get(f"{fleet.control_url}/vendors/sg")).json())["webhooks"]
                assert (held["paused"], held["held"], held["url"]) == (["hold"], 1, rx.url + "/hooks/sendgrid")
                assert len(rx.hits) == 1
                r = await s.put(put, json=[])
                assert r.status == 200
                await wait_for(lambda: len(rx.hits) == 2, what="u2's late webhook")
                await s.put(put, json={"behaviors": [{"kind": "webhook_pause", "mode": "drop"}]})
                await send(s, v, ["u3@users.test"])
                await wait_for(lambda: any(e["kind"] == "mta.webhook.dropped" for e in evs), what="u3 dropped")
                bad = await s.put(put, json=[{"kind": "webhook_pause", "mode": "later"}])
                assert bad.status == 400
                return rx, list(evs)

    rx, evs = asyncio.run(asyncio.wait_for(main(), 60))
    assert [h.path for h in rx.hits] == ["/hooks/sendgrid"] * 2
    assert wh(evs) == [
        ("mta.webhook.sent", "u1@users.test", 1, None), ("mta.webhook.answered", "u1@users.test", 1, None),
        ("mta.webhook.held", "u2@users.test", 1, None),
        ("mta.webhook.sent", "u2@users.test", 1, None), ("mta.webhook.answered", "u2@users.test", 1, None),
        ("mta.webhook.dropped", "u3@users.test", 0, "paused"),
    ]
    replies = [e["http_status"] for e in evs if e["kind"] == "mta.reply.sent"]
    assert replies == [202, 202, 202]
    changes = [e["by"] for e in evs if e["kind"] == "mta.behaviors.changed"]
    assert changes == ["api", "api", "api"]


def test_a_path_url_without_a_sut_base_url_is_refused_at_start():
    async def main():
        spec = FleetSpec(vendors=[VendorSpec(name="sg", api="sendgrid", webhooks={"url": "/hooks/sendgrid"})])
        try:
            async with Fleet(spec, control=False):
                pass
        except ValueError as exc:
            return str(exc)
        return None

    assert asyncio.run(main()) == (
        "vendor 'sg': webhooks.url '/hooks/sendgrid' is a path on the system under test, and no SUT base URL is "
        "known here; give a full http(s):// URL when the vendor runs on its own")
