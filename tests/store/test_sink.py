"""The ports' sink contract, on a real SQLite journal: what Intake answers for one PartRead,
and what it counts (once per new part, never for a part the journal already held)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.pdu import encode_deliver
from muxd.ports import ALREADY_STORED, PartRead, PartStored
from muxd.store import Journal
from muxd.store.sink import Intake

STAMP = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
READ_AT = STAMP.timestamp() + 5
# Cut short inside the originator's address: no decoder can read it.
UNDECODABLE = "07919761989901F0040B9197011199"


def read(pdu: str, index: int, tpdu_length: int | None = None) -> PartRead:
    return PartRead(
        sim="8970101",
        port="ttyUSB0",
        number="+79001234567",
        storage="SM",
        index=index,
        pdu=pdu,
        tpdu_length=tpdu_length,
        received_at=READ_AT,
    )


async def parts_in(journal: Journal, state: str) -> int:
    def op(conn: sqlite3.Connection) -> int:
        (n,) = conn.execute("SELECT count(*) FROM parts WHERE state = ?", (state,)).fetchone()
        return int(n)

    count: int = await journal.execute(op)
    return count


class Counts:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.messages = 0

    def part(self, state: str) -> None:
        self.parts.append(state)

    def message(self) -> None:
        self.messages += 1


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    journal = await Journal.open(tmp_path / "state")
    try:
        yield journal
    finally:
        await journal.close()


async def test_a_whole_sms_is_new_decodable_and_completes_a_message(journal: Journal) -> None:
    counts = Counts()
    intake = Intake(journal, on_part=counts.part, on_message=counts.message)
    (enc,) = encode_deliver("Bank", "code 1234", scts=STAMP)
    stored = await intake(read(enc.hex, 1, enc.tpdu_length))
    assert stored == PartStored(new=True, decodable=True, completed=True)
    assert (counts.parts, counts.messages) == (["assembled"], 1)
    (msg,) = await journal.pending(10)
    assert (msg.number, msg.sender, msg.text, msg.received_at) == (
        "+79001234567",
        "Bank",
        "code 1234",
        READ_AT,
    )


async def test_the_same_part_read_again_is_neither_new_nor_counted(journal: Journal) -> None:
    """A PDU read twice (a crash or a refused delete between the read and the delete) is the
    same part: the port deletes it at once and counts nothing."""
    counts = Counts()
    intake = Intake(journal, on_part=counts.part, on_message=counts.message)
    (enc,) = encode_deliver("Bank", "code 1234", scts=STAMP)
    await intake(read(enc.hex, 1))
    again = await intake(read(enc.hex, 7))  # at another index: still the same part
    assert again == ALREADY_STORED
    assert again.decodable  # deleted without a second read
    assert (counts.parts, counts.messages) == (["assembled"], 1)
    assert len(await journal.pending(10)) == 1


async def test_a_part_that_does_not_decode_is_kept_and_read_again(journal: Journal) -> None:
    counts = Counts()
    intake = Intake(journal, on_part=counts.part, on_message=counts.message)
    stored = await intake(read(UNDECODABLE, 3))
    assert stored == PartStored(new=True, decodable=False, completed=False)
    assert (counts.parts, counts.messages) == (["parked"], 0)
    assert await parts_in(journal, "parked") == 1
    # The second, identical read is the part already held: the port may delete it.
    assert await intake(read(UNDECODABLE, 3)) == ALREADY_STORED
    assert counts.parts == ["parked"]


async def test_only_the_part_completing_a_multipart_sms_completes_a_message(
    journal: Journal,
) -> None:
    counts = Counts()
    intake = Intake(journal, on_part=counts.part, on_message=counts.message)
    first, second = encode_deliver("Bank", "x" * 200, scts=STAMP, ref=9)
    assert await intake(read(second.hex, 2)) == PartStored(
        new=True, decodable=True, completed=False
    )
    assert counts.messages == 0
    assert await intake(read(first.hex, 1)) == PartStored(new=True, decodable=True, completed=True)
    assert (counts.parts, counts.messages) == (["waiting", "assembled"], 1)
    (msg,) = await journal.pending(10)
    assert msg.text == "x" * 200
