"""The group-commit engine on a real SQLite file: deferred writes, their order and durability,
the commit count, and what a failed deferred write does to the next batch."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.errors import JournalError
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd.store.commit import DEFERRED_WITHIN
from muxd.store.journal import JOURNAL_FILE

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
NUMBER = "+79001234567"
# Bounds on waits for what the test caused; they only stop a hang.
WAIT = 10.0


class Timer:
    """The journal's sleep, released by the test: records each requested delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._armed = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._armed.set()
        await fut

    def fire(self) -> None:
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)

    async def armed(self) -> None:
        """Return once the journal waits on this timer (its task has started)."""
        await self._armed.wait()


def sms(i: int) -> PartIn:
    (enc,) = encode_deliver("Bank", f"code {i}", scts=SCTS)
    return PartIn(
        sim="8970101", port="port000", number=NUMBER, storage="SM", index=i, pdu=enc.hex,
        tpdu_length=enc.tpdu_length, received_at=SCTS.timestamp() + 3,
    )  # fmt: skip


class Commits:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, seconds: float, ops: int) -> None:
        self.count += 1


@pytest.fixture
async def timer() -> Timer:
    return Timer()


@pytest.fixture
async def commits() -> Commits:
    return Commits()


@pytest.fixture
async def journal(tmp_path: Path, timer: Timer, commits: Commits) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path, sleep=timer.sleep, on_commit=commits)
    yield j
    timer.fire()
    await j.close()


def on_disk(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the journal file with a connection of its own: what a restart would find."""
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_a_deferred_write_is_durable_after_deferred_within_without_other_traffic(
    journal: Journal, timer: Timer, tmp_path: Path
) -> None:
    await journal.put_part(sms(1))
    (msg,), _ = await journal.take_batch(10)
    await journal.mark_delivered([msg.id], 1000.0)
    await timer.armed()
    # Not committed yet: nothing else started a transaction, and the timer has not fired.
    assert on_disk(tmp_path, "SELECT state, attempts FROM messages") == [("pending", 0)]
    assert timer.delays == [DEFERRED_WITHIN]
    timer.fire()
    await journal.flush()
    assert on_disk(tmp_path, "SELECT state, attempts FROM messages") == [("delivered", 1)]
    assert journal.backlog == 0


async def test_take_batch_after_mark_delivered_never_returns_a_delivered_message(
    journal: Journal, timer: Timer
) -> None:
    for i in range(1, 6):
        await journal.put_part(sms(i))
    batch, _ = await journal.take_batch(3)
    await journal.mark_delivered([m.id for m in batch], 1000.0)
    # The timer never fires: the mark rides in the next batch's transaction, before its read.
    rest, looked_at = await journal.take_batch(10)
    assert {m.text for m in rest} == {"code 4", "code 5"}
    assert looked_at == 2
    assert journal.backlog == 2


async def test_deferred_writes_ride_in_the_next_transaction(
    journal: Journal, commits: Commits, tmp_path: Path
) -> None:
    await journal.put_part(sms(1))
    before = commits.count
    (msg,), _ = await journal.take_batch(10)
    await journal.mark_delivered([msg.id], 1000.0)
    # take_batch only read (no fsync, not counted); the deferred writes wait for a transaction.
    assert commits.count == before
    await journal.put_part(sms(2))
    assert commits.count == before + 1
    assert on_disk(tmp_path, "SELECT text, state, attempts FROM messages ORDER BY id") == [
        ("code 1", "delivered", 1),
        ("code 2", "pending", 0),
    ]


async def test_commits_per_sms_on_the_delivery_path(
    journal: Journal, commits: Commits, timer: Timer
) -> None:
    # Twenty ports put one SMS each while the shipper takes and marks batches: the attempt
    # count and the delivered mark ride in the parts' transactions.
    before = commits.count
    for round_ in range(5):
        shipped = asyncio.ensure_future(journal.take_batch(100))
        await asyncio.gather(*(journal.put_part(sms(round_ * 20 + i)) for i in range(20)))
        batch, _ = await shipped
        await journal.mark_delivered([m.id for m in batch], 1000.0)
    timer.fire()
    await journal.flush()
    assert (commits.count - before) / 100 <= 1.5
    assert journal.backlog == len(await journal.pending(1000))


async def test_a_failed_deferred_write_refuses_the_next_batch_until_recorded(
    journal: Journal, timer: Timer, tmp_path: Path
) -> None:
    await journal.put_part(sms(1))
    await journal.put_part(sms(2))

    def refuse(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER no_mark BEFORE UPDATE OF delivered_at ON messages"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    await journal.execute(refuse)
    (first,), _ = await journal.take_batch(1)
    await journal.mark_delivered([first.id], 1000.0)
    # The mark fails in the next batch's transaction: that batch is refused, not re-sent.
    with pytest.raises(JournalError):
        await journal.take_batch(10)
    with pytest.raises(JournalError):
        await journal.take_batch(10)
    await journal.execute(lambda conn: conn.execute("DROP TRIGGER no_mark"))
    rest, _ = await journal.take_batch(10)
    assert [m.text for m in rest] == ["code 2"]
    assert on_disk(tmp_path, "SELECT state FROM messages ORDER BY id") == [
        ("delivered",),
        ("pending",),
    ]
    assert journal.backlog == 1


async def test_submit_returns_the_operations_result(journal: Journal) -> None:
    total: int = await journal.execute(lambda conn: int(conn.execute("SELECT 6 * 7").fetchone()[0]))
    assert total == 42


async def test_a_recount_does_not_undo_a_delivered_mark_queued_behind_it(
    journal: Journal, timer: Timer
) -> None:
    # The maintenance recount reads the backlog in the writer; a delivered mark queued after
    # that read was already counted out in memory. The recount must not count it back in.
    await journal.put_part(sms(1))
    await journal.put_part(sms(2))
    (first,), _ = await journal.take_batch(1)
    recount = asyncio.ensure_future(journal.recount())
    await asyncio.sleep(0)  # the recount's read is queued
    await journal.mark_delivered([first.id], 1000.0)
    assert journal.backlog == 1
    await recount
    timer.fire()
    await journal.flush()
    assert journal.backlog == len(await journal.pending(1000)) == 1


async def test_a_recount_keeps_a_delivered_mark_committed_with_it_counted_once(
    journal: Journal, timer: Timer
) -> None:
    # A mark queued before the recount's read is in the count: it is not taken off twice.
    await journal.put_part(sms(1))
    await journal.put_part(sms(2))
    (first,), _ = await journal.take_batch(1)
    await journal.mark_delivered([first.id], 1000.0)
    await journal.recount()
    timer.fire()
    await journal.flush()
    assert journal.backlog == len(await journal.pending(1000)) == 1


class VirtualTimer:
    """The journal's sleep on a clock of the test's own: ``advance`` wakes what is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, asyncio.Future[None]]] = []

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._due.append((self.now + delay, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, fut in self._due:
            if at <= self.now and not fut.done():
                fut.set_result(None)
        self._due = [(at, fut) for at, fut in self._due if not fut.done()]
        for _ in range(5):  # let the woken timer start its transaction (no wall time passes)
            await asyncio.sleep(0)


async def test_a_deferred_write_waits_its_own_deferred_within_not_an_earlier_writes(
    tmp_path: Path,
) -> None:
    # A trickle of SMS 30 ms apart: each delivered mark rides in the next SMS's transaction.
    # The timer started for the first mark must not fire for the second one 20 ms after it was
    # queued (one commit more per two SMS at 50 SMS/s).
    clock, commits = VirtualTimer(), Commits()
    journal = await Journal.open(tmp_path, sleep=clock.sleep, on_commit=commits)
    try:
        step = 0.03
        assert 2 * step > DEFERRED_WITHIN > step
        for i in range(1, 6):
            await journal.put_part(sms(i))
            (msg,), _ = await journal.take_batch(10)
            await journal.mark_delivered([msg.id], 1000.0)
            await clock.advance(step)
        assert commits.count == 5  # the five SMS, nothing else
        await clock.advance(DEFERRED_WITHIN)
        await journal.flush()
        assert commits.count == 6  # the last mark, within DEFERRED_WITHIN of being queued
        assert on_disk(tmp_path, "SELECT count(*) FROM messages WHERE state = 'delivered'") == [
            (5,)
        ]
    finally:
        await journal.close()


async def test_a_rider_waits_for_the_next_transaction_and_sees_its_write(
    journal: Journal,
) -> None:
    # The idle shipper's take: no transaction of its own; it runs at the end of the one that
    # stores the next SMS, and sees that SMS.
    await journal.put_part(sms(1))
    (first,), _ = await journal.take_batch(100)
    await journal.mark_delivered([first.id], 1000.0)
    before = journal.transactions
    rider = asyncio.ensure_future(journal.take_riding(100))
    await asyncio.sleep(0)  # one turn: the rider is registered
    assert not rider.done()
    assert journal.transactions == before
    await journal.put_part(sms(2))
    async with asyncio.timeout(WAIT):
        batch, looked_at = await rider
    assert [m.text for m in batch] == ["code 2"]  # not the delivered one: marks run first
    assert looked_at == 1
    assert journal.transactions == before + 1


async def test_a_rider_armed_while_a_message_commits_is_given_a_transaction(
    journal: Journal,
) -> None:
    # The race the kick closes: an SMS's transaction is already in the writer when the rider
    # comes, so it cannot ride in it; the announcement of that SMS starts one for the rider.
    loop = asyncio.get_running_loop()
    running, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        running.set()
        gate.wait(WAIT)

    held = asyncio.ensure_future(journal.execute(hold))
    put = asyncio.ensure_future(journal.put_part(sms(1)))  # the same transaction
    await loop.run_in_executor(None, running.wait, WAIT)
    rider = asyncio.ensure_future(journal.take_riding(100))
    await asyncio.sleep(0)  # one turn: the rider is registered, after the batch was formed
    gate.set()
    await held
    await put
    async with asyncio.timeout(WAIT):
        batch, _ = await rider
    assert [m.text for m in batch] == ["code 1"]


async def test_a_withdrawn_rider_is_not_run(journal: Journal) -> None:
    # Run, this rider would hold the next SMS (its number is not on its list).
    rider = asyncio.ensure_future(journal.take_riding(100, lambda: frozenset()))
    await asyncio.sleep(0)
    rider.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rider
    await journal.put_part(sms(1))
    assert [m.text for m in await journal.pending(10)] == ["code 1"]
