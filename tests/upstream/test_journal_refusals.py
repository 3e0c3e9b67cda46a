"""Loops that talk to Onlinesim while one journal operation keeps failing on its own.

A failed commit (a full disk) stops the journal, and ``wait_healthy`` blocks until a probe
write succeeds. An operation that fails by itself (a constraint, a bug) leaves the journal
healthy: ``wait_healthy`` returns at once, so a loop that only waits for it retries at once.
Each loop must still keep a floor between attempts, and log the state change, not each
attempt. The failure is a real one: a trigger refusing the write, as a constraint would.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from muxd.store import Journal
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Observer
from muxd.upstream.v1.operations import Reservation, reserve
from muxd.upstream.v1.pusher import Pusher
from muxd_sim.clock import FakeClock
from tests.upstream.conftest import KEY, NUMBERS, Upstream
from tests.upstream.outage import HOST, PhaseResolver, PushEndpoint, session
from tests.upstream.test_loop_outage import (
    MAX_LOG_LINES,
    RENT_NUMBERS,
    muxd_lines,
    open_rent_operations,
    running,
)
from tests.upstream.test_publisher import ready_port
from tests.v1.conftest import receive

HOUR = 3600.0
# Requests to Onlinesim one loop may make in that hour while the journal refuses.
MAX_REQUESTS = 60


async def refuse(journal: Journal, name: str, statement: str) -> None:
    """Make one kind of write fail by itself (the journal stays healthy)."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute(f"CREATE TRIGGER {name} {statement} BEGIN SELECT RAISE(ABORT, 'refused'); END")

    await journal.execute(op)


async def allow(journal: Journal, name: str) -> None:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(f"DROP TRIGGER {name}")

    await journal.execute(op)


async def test_shipper_waits_and_logs_once_while_a_journal_operation_fails(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    clock = FakeClock()
    journal = upstream.journal
    await upstream.receive(NUMBERS[0], "Bank", "code 1")
    await upstream.receive(NUMBERS[0], "Bank", "code 2")
    # Recording a delivery (a deferred write) fails: the next batch is refused until it is
    # recorded, so "code 1" is not sent again meanwhile.
    await refuse(journal, "no_attempts", "BEFORE UPDATE OF delivered_at ON messages")
    ship = Shipper(
        journal, upstream.client, batch_max=1, batch_delay=0.0,
        sleep=clock.sleep, clock=clock, timer=clock.monotonic,
    )  # fmt: skip
    async with running(ship.drain()) as task:
        await clock.run_for(HOUR)
        lines = muxd_lines(caplog)
        assert len(lines) <= MAX_LOG_LINES, lines[:5]
        await allow(journal, "no_attempts")
        await clock.run_until(task.done)
    assert [m.message for m in upstream.stub.messages] == ["code 1", "code 2"]


async def test_publisher_waits_and_logs_once_while_a_journal_operation_fails(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    clock = FakeClock()
    journal, stub = upstream.journal, upstream.stub
    ports = [ready_port(i) for i in range(1, 4)]
    # The list is accepted upstream, but remembering it fails.
    await refuse(journal, "no_numbers", "BEFORE INSERT ON numbers")
    publisher = NumbersPublisher(
        upstream.client, lambda: ports, asyncio.Event(), journal, interval=240.0, rent=False,
        startup_grace=0.0, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    before = len(stub.requests)
    async with running(publisher.run()):
        await clock.run_for(HOUR)
        assert len(stub.requests) - before <= MAX_REQUESTS
        lines = muxd_lines(caplog)
        assert len(lines) <= MAX_LOG_LINES, lines[:5]
        await allow(journal, "no_numbers")
        wanted = {p.number for p in ports}
        await clock.run_until(lambda: set(publisher.published) == wanted)
    assert set(await journal.published_numbers()) == wanted


async def test_pusher_logs_once_while_a_journal_operation_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd")
    clock = FakeClock()
    push = PushEndpoint()
    await push.start()
    resolver = PhaseResolver(push.port)
    journal = await Journal.open(tmp_path)
    numbers = RENT_NUMBERS
    try:
        await open_rent_operations(journal, clock.now)
        async with session(resolver) as http:
            url = f"http://{HOST}:{push.port}/v1/PUSH_SMS"
            pusher = Pusher(
                journal, http, api_key=KEY, url=url, rent_url=url, filters={},
                gzip_body=False, clock=clock, sleep=clock.sleep, observer=V1Observer(),
            )  # fmt: skip
            ids = [await receive(journal, n, "Bank", f"sms {n}", clock.now) for n in numbers]
            # Recording that a push goes out fails: nothing is sent meanwhile.
            await refuse(journal, "no_push_attempts", "BEFORE UPDATE OF attempts ON pushes")

            def idle() -> bool:
                return pusher.sending == 0

            async with running(pusher.run()):
                await clock.run_for(HOUR, idle)
                lines = muxd_lines(caplog)
                assert len(lines) <= MAX_LOG_LINES, lines[:5]
                assert push.accepted == []
                await allow(journal, "no_push_attempts")
                await clock.run_until(lambda: len(push.accepted) == len(ids), idle)
            assert sorted(push.accepted) == sorted(ids)
    finally:
        await journal.close()
        await resolver.close()
        await push.close()


async def test_a_delivered_push_the_journal_cannot_record_is_not_sent_again(
    tmp_path: Path,
) -> None:
    """Onlinesim answered SUCCESS, but recording it fails: the push is not sent again (it is
    recorded once the journal lets it), however long recording fails."""
    clock = FakeClock()
    push = PushEndpoint()
    await push.start()
    resolver = PhaseResolver(push.port)
    journal = await Journal.open(tmp_path)
    number = "+79002220001"
    try:
        op = await reserve(
            journal, Reservation(number, "rent", "russia", "mts", None, True, clock.now - 60, None)
        )
        assert op is not None
        async with session(resolver) as http:
            url = f"http://{HOST}:{push.port}/v1/PUSH_SMS"
            pusher = Pusher(
                journal, http, api_key=KEY, url=url, rent_url=url, filters={},
                gzip_body=False, clock=clock, sleep=clock.sleep, observer=V1Observer(),
            )  # fmt: skip
            sms_id = await receive(journal, number, "Bank", "code 1234", clock.now)
            # Settling a push (and its message) fails; recording attempts still works.
            await refuse(journal, "no_settle", "BEFORE UPDATE OF state ON pushes")

            def idle() -> bool:
                return pusher.sending == 0

            async with running(pusher.run()):
                await clock.run_until(lambda: push.accepted == [sms_id], idle)
                await clock.run_for(HOUR, idle)
                assert push.accepted == [sms_id]
                await allow(journal, "no_settle")
                await clock.run_until(lambda: pusher.queued == 0, idle)
            assert push.accepted == [sms_id]
            assert (await journal.stats()).get("messages_delivered") == 1
    finally:
        await journal.close()
        await resolver.close()
        await push.close()
