"""Journal maintenance while one of its operations keeps failing on its own.

A failed commit stops the journal and ``wait_healthy`` blocks until a probe write succeeds; an
operation that fails by itself (here a trigger refusing the write, as a constraint would)
leaves the journal healthy, so ``wait_healthy`` returns at once. Maintenance must still wait
its interval before the next round, and say so once, not once per round.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd.store.clock import StoreClock
from muxd.store.maintenance import HOLD_TIMEOUT, MAINTENANCE_INTERVAL, JournalMaintenance
from muxd_sim.clock import FakeClock

# Bounds a wait for something the test caused; it only stops a hang.
WAIT = 5.0


async def test_a_failing_maintenance_round_waits_its_interval_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    stamp = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    fake = FakeClock(stamp.timestamp() + 60, mono=100.0)
    clock = StoreClock(wall=fake, monotonic=fake.monotonic, epoch="b")
    journal = await Journal.open(tmp_path / "state", clock=clock)
    try:
        (enc,) = encode_deliver("Bank", "code 1", scts=stamp)
        part = PartIn("sim-1", "port000", "+79001110001", "SM", 1, enc.hex, enc.tpdu_length,
                      stamp.timestamp() + 60)  # fmt: skip
        result = await journal.put_part(part)
        assert result.message_id is not None
        await journal.hold([result.message_id], "number not listed upstream")
        fake.mono += HOLD_TIMEOUT + 1  # due to be parked: the round writes, and that fails

        def refuse(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TRIGGER no_park BEFORE UPDATE OF state ON messages"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )

        await journal.execute(refuse)
        slept: list[float] = []
        resting = asyncio.Event()
        forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def sleep(delay: float) -> None:
            slept.append(delay)
            resting.set()
            await forever

        maintenance = JournalMaintenance(
            journal, retention_days=7.0, reassembly_timeout=1800.0, sleep=sleep
        )
        task = asyncio.create_task(maintenance.run())
        try:
            async with asyncio.timeout(WAIT):
                await resting.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        logger = "muxd.store.maintenance"
        errors = [r for r in caplog.records if r.name == logger and r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors[:5]]
        assert slept == [MAINTENANCE_INTERVAL]
    finally:
        await journal.close()
