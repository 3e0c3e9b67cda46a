"""The cluster's part of a box never ends the box: an error that is not "PostgreSQL is away"
stops the cluster's tasks, is said once, and they start again after a floor, while the box
goes on receiving SMS (real PostgreSQL errors; real boxes)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

from muxd.cluster.supervise import RESTART_FLOOR, supervise
from muxd_sim.clock import FakeClock

from .boxes import WAIT, call, cluster, until

HOUR = 3600.0


async def test_an_error_that_recurs_for_an_hour_is_said_once_and_retried_with_the_floor(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    clock = FakeClock()
    conn = await asyncpg.connect(dsn)
    starts = 0
    fixed = asyncio.Event()

    async def run() -> None:
        nonlocal starts
        starts += 1
        if fixed.is_set():
            return
        await conn.fetch("SELECT * FROM a_table_dropped_by_hand")  # UndefinedTableError

    stopped: list[str] = []
    try:
        task = asyncio.ensure_future(
            supervise("v1", run, sleep=clock.sleep, on_stopped=stopped.append)
        )
        await clock.run_for(HOUR)
        assert not task.done()
        assert starts <= HOUR / RESTART_FLOOR + 1
        assert starts >= HOUR / RESTART_FLOOR - 1
        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "UndefinedTableError" in errors[0].getMessage()
        assert "a_table_dropped_by_hand" in errors[0].getMessage()
        assert len(stopped) == starts
        fixed.set()
        await clock.run_until(task.done)
        assert task.result() is None
    finally:
        await conn.close()


async def test_a_cancel_is_not_an_error() -> None:
    clock = FakeClock()
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(supervise("v1", run, sleep=clock.sleep))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_box_whose_cluster_tables_are_gone_keeps_receiving(
    tmp_path: Path, dsn: str
) -> None:
    async with cluster(tmp_path, dsn, ["a"], 2) as (boxes, driver, _observer):
        (a,) = boxes
        # By hand, on the cluster's database: the lease table goes, the schema version stays
        # (so no migration brings it back). Every lease renewal now fails with an error that
        # is not "PostgreSQL is away".
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("DROP TABLE boxes CASCADE")
        finally:
            await conn.close()

        async def stopped() -> bool:
            return "muxd_cluster_stopped_on_error_total 1.0" in await a.metrics()

        await until(stopped, "the cluster's tasks stop on the error", WAIT, boxes)
        assert a.proc is not None
        assert a.proc.returncode is None  # the box runs on
        # GET_NUMBER answers no numbers (never an error page), and SMS are still received.
        answer = await call(driver, a, "get_number", "russia", "any", "vk", 10)
        assert answer["status"] == "NO_NUMBERS", answer
        port = a.sim.ports[0]
        a.sim.inject(port.index, "Bank", "code 4711")

        async def received() -> bool:
            return "muxd_sms_received_total 1.0" in await a.metrics()

        await until(received, "the SMS is journaled", WAIT, boxes)
        assert a.log().count("stopped on an error") == 1
