"""Intake and time on a real SQLite journal: bad and absurd SMSC stamps, reassembly by stamp,
and deadlines that a wall-clock step does not move (the clocks are injected)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from muxd.pdu import encode_deliver
from muxd.pdu.reassembly import MAX_GENERATIONS
from muxd.store import Journal, PartIn
from muxd.store.clock import StoreClock
from muxd.store.journal import JOURNAL_FILE
from muxd_sim.clock import FakeClock

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
HOUR = 3600.0
TIMEOUT = 1800.0  # the reassembly timeout under test (the config's default)
HOLD = 86400.0


def store_clock(clock: FakeClock, epoch: str = "boot-1") -> StoreClock:
    return StoreClock(wall=clock, monotonic=clock.monotonic, epoch=epoch)


@pytest.fixture
def clocks() -> FakeClock:
    """A wall clock that the test steps, and a monotonic one that only moves forward."""
    return FakeClock(SCTS.timestamp() + 5.0, mono=50_000.0)


@pytest.fixture
async def journal(tmp_path: Path, clocks: FakeClock) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path, clock=store_clock(clocks))
    yield j
    await j.close()


def part(clocks: FakeClock, pdu: str, tpdu_length: int | None = None, index: int = 1) -> PartIn:
    return PartIn(
        sim="8970101",
        port="port000",
        number="+79001234567",
        storage="SM",
        index=index,
        pdu=pdu,
        tpdu_length=tpdu_length,
        received_at=clocks.now,  # the wall clock at the read, as the daemon stores it
    )


def deliver_hex(*, scts: str, septets: bytes) -> str:
    """One SMS-DELIVER whose TP-SCTS octets are ``scts`` (hex), whatever they hold."""
    (enc,) = encode_deliver("Bank", septets.decode(), scts=SCTS)
    assert enc.hex.count(STAMP_HEX) == 1
    return enc.hex.replace(STAMP_HEX, scts)


STAMP_HEX = "62115221000000"  # SCTS as TP-SCTS octets


def sql(tmp_path: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# --- time stamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp", ["62310021436500", "62101052436500", "621010214365A0"]
)  # month 13, hour 25, non-BCD zone
async def test_a_bad_stamp_is_forwarded_dated_by_the_read(
    journal: Journal, clocks: FakeClock, tmp_path: Path, stamp: str
) -> None:
    result = await journal.put_part(part(clocks, deliver_hex(scts=stamp, septets=b"code 4711")))
    assert (result.state, result.message_id is not None) == ("assembled", True)
    (msg,) = await journal.pending(10)
    assert msg.text == "code 4711"
    assert msg.sms_time == int(clocks.now)
    assert sql(tmp_path, "SELECT sms_time_source FROM messages") == [("read",)]


@pytest.mark.parametrize(
    ("stamp", "source"),
    [
        ("62115221000000", "stamp"),  # 2026-11-25 12:00:00 UTC, read 5 s later
        ("99115221000000", "read"),  # year 99 read as 2099
        ("00101000000000", "read"),  # 2000-01-01: an SMSC clock reset
        # 2026-11-24 18:30 at -17:30 is the read instant, but no place uses that zone.
        ("6211428103000F", "read"),
    ],
)
async def test_an_absurd_stamp_is_not_the_date(
    journal: Journal, clocks: FakeClock, tmp_path: Path, stamp: str, source: str
) -> None:
    await journal.put_part(part(clocks, deliver_hex(scts=stamp, septets=b"code 1")))
    (msg,) = await journal.pending(10)
    want = int(SCTS.timestamp()) if source == "stamp" else int(clocks.now)
    assert msg.sms_time == want
    assert sql(tmp_path, "SELECT sms_time_source FROM messages") == [(source,)]


# --- reassembly by time stamp --------------------------------------------------------------

A_TEXT = "Code for A is 1111. Do not share it with anyone, we never ask for it. " * 3
B_TEXT = "Transfer 9000 RUB to card *1234 confirmed. If this was not you, call us. " * 3


def sent(text: str, when: datetime, ref: int = 7) -> list[tuple[str, int]]:
    """The PDUs of one SMS as an SMSC stamps them: one second apart."""
    n = len(encode_deliver("Bank", text, scts=when, ref=ref))
    out = []
    for i in range(n):
        enc = encode_deliver("Bank", text, scts=when + timedelta(seconds=i), ref=ref)[i]
        out.append((enc.hex, enc.tpdu_length))
    return out


@pytest.mark.parametrize("gap", [90, 600])
async def test_interleaved_messages_on_one_reference_are_not_mixed(
    journal: Journal, clocks: FakeClock, gap: int
) -> None:
    """A1, B1, B2, A2 from one sender, one reference: A and B, never A1 + B2."""
    a = sent(A_TEXT, SCTS)
    b = sent(B_TEXT, SCTS + timedelta(seconds=gap))
    assert len(a) == len(b) == 2
    for i, (pdu, length) in enumerate([a[0], b[0], b[1], a[1]]):
        await clocks.advance(1.0)
        await journal.put_part(part(clocks, pdu, length, index=i))
    texts = [m.text for m in await journal.pending(10)]
    assert texts == [B_TEXT, A_TEXT]


async def test_generations_per_key_are_capped(journal: Journal, clocks: FakeClock) -> None:
    """A sender reusing one reference while parts get lost: at most MAX_GENERATIONS sets wait;
    the oldest is delivered incomplete, not dropped and not left to grow."""
    for k in range(MAX_GENERATIONS + 1):
        (first, _) = sent(f"message {k} " * 20, SCTS + timedelta(hours=k))
        await clocks.advance(1.0)
        result = await journal.put_part(part(clocks, *first, index=k))
        assert result.state == "waiting"
        assert len(result.released) == (k == MAX_GENERATIONS)
    (msg,) = await journal.pending(10)
    assert msg.text.startswith("message 0 ")
    assert msg.text.endswith("[…]")
    assert journal.backlog == 1


# --- deadlines on the monotonic clock ------------------------------------------------------


async def hold_one(journal: Journal, clocks: FakeClock) -> None:
    (enc,) = encode_deliver("Bank", "held code", scts=SCTS)
    await journal.put_part(part(clocks, enc.hex, enc.tpdu_length, index=99))
    batch, _ = await journal.take_batch(10, listed=set())  # its number is off the list
    assert batch == []


@pytest.mark.parametrize("step", [HOUR, -HOUR, 400 * 86400.0])
async def test_a_wall_clock_step_releases_and_parks_nothing_early(
    journal: Journal, clocks: FakeClock, step: float
) -> None:
    (pdu, length), _ = sent("y" * 300, SCTS)
    await journal.put_part(part(clocks, pdu, length))  # its second part is late
    await hold_one(journal, clocks)
    clocks.mono += TIMEOUT / 2
    clocks.step(step)  # NTP, an operator, a box without an RTC
    assert await journal.release_incomplete(TIMEOUT) == 0
    assert await journal.park_held(HOLD, "number not listed upstream for 24 h") == 0
    # Parts read after the step wait as long as any.
    (late_pdu, late_length), _ = sent("z" * 300, SCTS + timedelta(hours=5))
    await journal.put_part(part(clocks, late_pdu, late_length, index=2))
    clocks.step(-2 * step)
    assert await journal.release_incomplete(TIMEOUT) == 0
    # On time by the monotonic clock, whatever the wall clock says.
    clocks.mono += TIMEOUT / 2
    assert await journal.release_incomplete(TIMEOUT) == 1
    clocks.mono += TIMEOUT / 2
    assert await journal.release_incomplete(TIMEOUT) == 1
    assert await journal.park_held(HOLD, "unlisted") == 0
    clocks.mono += HOLD
    assert await journal.park_held(HOLD, "unlisted") == 1


async def test_sets_from_before_a_reboot_count_from_the_opening(
    tmp_path: Path, clocks: FakeClock
) -> None:
    journal = await Journal.open(tmp_path, clock=store_clock(clocks, "boot-1"))
    try:
        (pdu, length), _ = sent("y" * 300, SCTS)
        await journal.put_part(part(clocks, pdu, length))
        await hold_one(journal, clocks)
    finally:
        await journal.close()
    # Same boot, a restarted daemon: the monotonic readings compare, the ages go on.
    clocks.mono += TIMEOUT - 10
    journal = await Journal.open(tmp_path, clock=store_clock(clocks, "boot-1"))
    try:
        assert await journal.release_incomplete(TIMEOUT) == 0
    finally:
        await journal.close()
    # A reboot: the monotonic clock restarts near zero; the ages restart at the opening.
    clocks.mono = 30.0
    journal = await Journal.open(tmp_path, clock=store_clock(clocks, "boot-2"))
    try:
        assert await journal.release_incomplete(TIMEOUT) == 0
        assert await journal.park_held(HOLD, "unlisted") == 0
        clocks.mono += TIMEOUT
        assert await journal.release_incomplete(TIMEOUT) == 1
        clocks.mono += HOLD
        assert await journal.park_held(HOLD, "unlisted") == 1
    finally:
        await journal.close()
