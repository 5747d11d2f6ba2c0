"""The fake MTA's Message-ID index behind the delivery-status lookup: bounded, oldest forgotten first."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest
from maildrill.fake_mta.config import MTASpec
from maildrill.fake_mta.server import DEFAULT_MESSAGE_INDEX_CAP, FakeMTA, MessageIndex


def test_the_newest_cap_ids_are_kept_and_the_oldest_forgotten_first() -> None:
    index = MessageIndex(3)
    for i in range(5):
        index.add(f"m{i}@app.drill.test", float(i), "lost" if i == 3 else "sent")
    index.add("m2@app.drill.test", 9.0, "lost")  # a duplicate keeps the first acceptance
    assert (len(index), index.forgotten) == (3, 2)
    assert [index.get(f"m{i}@app.drill.test") for i in range(5)] == [
        None, None,
        {"message_id": "m2@app.drill.test", "accepted": True, "t_s": 2.0, "ack": "sent"},
        {"message_id": "m3@app.drill.test", "accepted": True, "t_s": 3.0, "ack": "lost"},
        {"message_id": "m4@app.drill.test", "accepted": True, "t_s": 4.0, "ack": "sent"},
    ]


def test_cap_zero_remembers_nothing_and_a_negative_cap_is_refused() -> None:
    index = MessageIndex(0)
    index.add("m@app.drill.test", 1.0, "sent")
    assert (len(index), index.get("m@app.drill.test")) == (0, None)
    with pytest.raises(ValueError, match=r"message index cap -1: must be >= 0 \(0 remembers no Message-ID\)"):
        MessageIndex(-1)
    assert MessageIndex().cap == DEFAULT_MESSAGE_INDEX_CAP == 100_000


def test_a_fake_mta_answers_the_lookup_for_its_newest_messages_only() -> None:
    async def main() -> list[str | None]:
        async with FakeMTA(MTASpec(name="vendor"), message_index_cap=2) as mta:
            for i in range(3):
                msg = f"Message-ID: <otp-{i}@app.drill.test>\r\n\r\n12345{i}\r\n"
                await aiosmtplib.send(msg, sender="a@app.drill.test", recipients=[f"u{i}@users.drill.test"],
                                      hostname=mta.host, port=mta.port, start_tls=False)
            found = [mta.lookup_message(f"<otp-{i}@app.drill.test>") for i in range(3)]
            return [f["ack"] if f else None for f in found]

    assert asyncio.run(main()) == [None, "sent", "sent"]
