"""The idle shipper's take rides in the next transaction: what must still hold around it.

No lost wake-up (IDLE_POLL is pushed out of reach, so a missed one hangs the test), no
duplicate after a delivered mark refused in the rider's own transaction, nor across stops
while a rider is queued or inside a running batch."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from muxd.store import Journal
from muxd.upstream import shipper as shipper_mod
from muxd.upstream.shipper import Shipper
from tests.upstream.conftest import NUMBERS, Upstream

# Bounds on waits for what the test caused; they only stop a hang.
WAIT = 10.0


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def idle(journal: Journal) -> None:
    """Until the shipper waits to ride again (a yield per turn; no time passes)."""
    async with asyncio.timeout(WAIT):
        while not journal.riding:  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_failed_mark_in_riders_transaction_is_not_resent(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipper_mod, "IDLE_POLL", 1e6)
    up = upstream
    naps: list[asyncio.Future[None]] = []

    async def nap(delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        naps.append(fut)
        await fut

    def refuse(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER no_mark BEFORE UPDATE OF delivered_at ON messages"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    await up.journal.execute(refuse)
    ship = Shipper(up.journal, up.client, batch_max=10, sleep=nap)
    task = asyncio.create_task(ship.run())
    try:
        await up.receive(NUMBERS[0], "Bank", "one")
        await up.stub.wait_for_messages(1)
        await up.receive(NUMBERS[0], "Bank", "two")
        async with asyncio.timeout(WAIT):
            while not naps:  # noqa: ASYNC110 - the shipper's floor after the refusal
                await asyncio.sleep(0)
        await up.journal.execute(lambda c: c.execute("DROP TRIGGER no_mark"))
        naps.pop().set_result(None)
        await up.stub.wait_for_messages(2)
        await idle(up.journal)
        assert [m.message for m in up.stub.messages] == ["one", "two"]
        assert up.stub.duplicates == 0
    finally:
        await _stop(task)


async def test_release_held_wakes_a_riding_shipper(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipper_mod, "IDLE_POLL", 1e6)
    up = upstream
    listed = {NUMBERS[0]}
    ship = Shipper(up.journal, up.client, batch_max=10, listed=lambda: frozenset(listed))
    task = asyncio.create_task(ship.run())
    try:
        await idle(up.journal)
        await up.receive(NUMBERS[1], "Bank", "held")  # the rider holds it
        await idle(up.journal)
        assert up.stub.messages == []
        listed.add(NUMBERS[1])
        await up.journal.release_held([NUMBERS[1]])
        await up.stub.wait_for_messages(1)
    finally:
        await _stop(task)


async def test_stop_while_rider_in_batch_then_restart(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipper_mod, "IDLE_POLL", 1e6)
    up = upstream
    ship = Shipper(up.journal, up.client, batch_max=10)
    for round_ in range(20):
        task = asyncio.create_task(ship.run())
        await idle(up.journal)
        put = asyncio.ensure_future(up.receive(NUMBERS[0], "Bank", f"m{round_}"))
        for _ in range(round_ % 5):
            await asyncio.sleep(0)
        await _stop(task)
        await put
    task = asyncio.create_task(ship.run())
    try:
        await up.stub.wait_for_messages(20)
        await idle(up.journal)
        assert up.stub.duplicates == 0
        assert len(up.stub.messages) == 20
    finally:
        await _stop(task)
