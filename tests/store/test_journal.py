"""The journal on a real SQLite file: durability, dedup, group commit, reassembly, parking."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd.store.clock import StoreClock
from muxd.store.journal import JOURNAL_FILE
from muxd_sim.clock import FakeClock

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
READ_AT = SCTS.timestamp() + 3.0  # muxd read it 3 s after the SMSC stamped it


def part(pdu: str, tpdu_length: int | None, *, sim: str = "8970101", index: int = 1) -> PartIn:
    return PartIn(
        sim=sim,
        port="port000",
        number="+79001234567",
        storage="SM",
        index=index,
        pdu=pdu,
        tpdu_length=tpdu_length,
        received_at=READ_AT,
    )


@pytest.fixture
async def journal(tmp_path: Path) -> Journal:
    j = await Journal.open(tmp_path)
    yield j  # type: ignore[misc]
    await j.close()


async def test_single_part_becomes_a_pending_message(journal: Journal) -> None:
    (enc,) = encode_deliver("Telegram", "Your code is 123456", scts=SCTS)
    result = await journal.put_part(part(enc.hex, enc.tpdu_length))
    assert result.new
    assert result.state == "assembled"
    assert result.message_id is not None
    (msg,) = await journal.pending(10)
    assert (msg.number, msg.sender, msg.text) == ("+79001234567", "Telegram", "Your code is 123456")
    assert msg.sms_time == int(SCTS.timestamp())


async def test_reread_part_is_recognised_not_doubled(journal: Journal) -> None:
    (enc,) = encode_deliver("+79161234567", "Ваш код 1", scts=SCTS)
    first = await journal.put_part(part(enc.hex, enc.tpdu_length, index=3))
    again = await journal.put_part(part(enc.hex.lower(), enc.tpdu_length, index=7))
    assert not again.new
    assert again.part_id == first.part_id
    assert len(await journal.pending(10)) == 1


async def test_same_pdu_on_another_sim_is_another_message(journal: Journal) -> None:
    (enc,) = encode_deliver("+79161234567", "hello", scts=SCTS)
    await journal.put_part(part(enc.hex, enc.tpdu_length, sim="A"))
    await journal.put_part(part(enc.hex, enc.tpdu_length, sim="B"))
    assert len(await journal.pending(10)) == 2


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    commits: list[int] = []
    journal = await Journal.open(tmp_path, on_commit=lambda _s, n: commits.append(n))
    try:
        texts = [f"code {i:04d}" for i in range(200)]
        encoded = [encode_deliver("Bank", t, scts=SCTS)[0] for t in texts]
        results = await asyncio.gather(
            *(journal.put_part(part(e.hex, e.tpdu_length, index=i)) for i, e in enumerate(encoded))
        )
        assert all(r.new for r in results)
        assert sum(commits) == 200
        # Group commit: far fewer transactions (fsyncs) than parts.
        assert len(commits) <= 20
    finally:
        await journal.close()


async def test_multipart_out_of_order_assembles_once(journal: Journal) -> None:
    text = "Ваш код подтверждения 😀 " * 6  # UCS-2, several parts, surrogate pairs
    parts = encode_deliver("Service", text, scts=SCTS, ref=300, ref_bits=16)
    assert len(parts) >= 3
    results = []
    for i, enc in reversed(list(enumerate(parts))):
        results.append(await journal.put_part(part(enc.hex, enc.tpdu_length, index=i + 1)))
    assert [r.message_id is not None for r in results] == [False] * (len(parts) - 1) + [True]
    (msg,) = await journal.pending(10)
    assert msg.text == text


async def test_undecodable_pdu_is_parked_not_dropped(journal: Journal, tmp_path: Path) -> None:
    result = await journal.put_part(part("07912143658709F1040B91ZZZZ", None))
    assert result.new
    assert result.state == "parked"
    assert result.message_id is None
    assert await journal.pending(10) == []
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        (error,) = conn.execute(
            "SELECT error FROM parts WHERE id = ?", (result.part_id,)
        ).fetchone()
    finally:
        conn.close()
    assert error


async def test_delivered_messages_are_not_pending_and_state_survives_reopen(
    tmp_path: Path,
) -> None:
    journal = await Journal.open(tmp_path)
    for i in range(3):
        (enc,) = encode_deliver("X", f"m{i}", scts=SCTS)
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=i))
    first, *rest = await journal.pending(10)
    await journal.mark_delivered([first.id], 2.0)
    await journal.close()

    journal = await Journal.open(tmp_path)
    try:
        assert [m.id for m in await journal.pending(10)] == [m.id for m in rest]
        stats = await journal.stats()
        assert stats["messages_delivered"] == 1
        assert stats["messages_pending"] == 2
    finally:
        await journal.close()


async def test_reused_reference_starts_a_new_generation(journal: Journal) -> None:
    # Two different messages from one sender with the same reference, interleaved.
    a = encode_deliver("Bank", "A" * 200, scts=SCTS, ref=7)
    b = encode_deliver("Bank", "B" * 200, scts=SCTS, ref=7)
    assert len(a) == len(b) == 2
    order = [a[0], b[0], a[1], b[1]]
    for i, enc in enumerate(order):
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=i))
    texts = sorted(m.text for m in await journal.pending(10))
    assert texts == ["A" * 200, "B" * 200]


async def test_incomplete_set_is_released_after_timeout_never_dropped(tmp_path: Path) -> None:
    fake = FakeClock(READ_AT, mono=1000.0)
    clock = StoreClock(wall=fake, monotonic=fake.monotonic, epoch="boot")
    journal = await Journal.open(tmp_path, clock=clock)
    try:
        parts = encode_deliver("Bank", "x" * 150 + "y" * 150, scts=SCTS, ref=9)
        assert len(parts) == 2
        await journal.put_part(part(parts[1].hex, parts[1].tpdu_length))  # part 1 never comes
        fake.mono += 1.0
        assert await journal.release_incomplete(max_age=1.5) == 0  # not stale yet
        assert await journal.release_incomplete(max_age=1.0) == 1
        (msg,) = await journal.pending(10)
        assert msg.text.startswith("[…]")
        assert msg.text.endswith("y" * 10)
        conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
        try:
            (flag,) = conn.execute(
                "SELECT incomplete FROM messages WHERE id = ?", (msg.id,)
            ).fetchone()
        finally:
            conn.close()
        assert flag == 1
        # The late part arrives after the release: it is journaled, not merged, not lost.
        late = await journal.put_part(part(parts[0].hex, parts[0].tpdu_length, index=2))
        assert late.new
        assert late.state == "waiting"
    finally:
        await journal.close()


async def test_forward_migration_keeps_data(tmp_path: Path) -> None:
    from muxd.store.schema import MIGRATIONS, SCHEMA_VERSION

    conn = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO messages(sim, port, number, sender, text, sms_time, received_at, state)"
        " VALUES ('s', 'port000', '+79001234567', 'Bank', 'old', 1, 1.0, 'pending')"
    )
    conn.close()
    journal = await Journal.open(tmp_path)
    try:
        (msg,) = await journal.pending(10)
        assert msg.text == "old"
        assert journal.backlog == 1
    finally:
        await journal.close()
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


async def test_corrupt_database_is_refused_loudly(tmp_path: Path) -> None:
    from muxd.errors import JournalError

    (tmp_path / JOURNAL_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(tmp_path)


async def test_prune_takes_delivered_messages_with_their_parts(
    journal: Journal, tmp_path: Path
) -> None:
    parts = encode_deliver("Bank", "p" * 300, scts=SCTS, ref=5)
    for i, enc in enumerate(parts):
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=i))
    (single,) = encode_deliver("Bank", "kept", scts=SCTS)
    await journal.put_part(part(single.hex, single.tpdu_length, index=9))
    first, kept = await journal.pending(10)
    await journal.mark_delivered([first.id], when=100.0)
    assert await journal.prune(older_than=100.0) == 0  # retention counts from delivery
    assert await journal.prune(older_than=101.0) == 1
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        rows = conn.execute("SELECT message_id FROM parts").fetchall()
        by_message = conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM parts WHERE message_id IN (1, 2)"
        ).fetchall()
        by_state = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM parts WHERE state = 'parked'"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(kept.id,)]
    # By index, not a scan of every part.
    assert "parts_message" in str(by_message)
    assert "parts_state" in str(by_state)
