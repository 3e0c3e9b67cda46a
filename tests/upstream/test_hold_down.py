"""modems.unregistered_hold: a short loss of registration does not withdraw a v2 number; the
number goes once the hold is over. The publisher runs on an injected clock against the real
stand-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from muxd.ports import PortInfo, PortStatus
from muxd.upstream.publisher import NumbersPublisher, sellable_entries
from muxd_sim.clock import FakeClock
from tests.upstream.conftest import Upstream
from tests.upstream.test_publisher import ready_port

WAIT = 10.0
HOLD = 60.0


@contextlib.asynccontextmanager
async def running(publisher: NumbersPublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def lose_registration(info: PortInfo, when: float) -> None:
    info.registered = False
    info.unregistered_at = when


def test_sellable_held_counts_a_recent_loss_only() -> None:
    info = ready_port(1)
    lose_registration(info, 100.0)
    assert not info.sellable
    assert info.sellable_held(159.9, HOLD)
    assert not info.sellable_held(160.0, HOLD)
    assert not info.sellable_held(101.0, 0.0)  # 0: today's behaviour
    info.status = PortStatus.BACKOFF  # a port that is down is never held
    assert not info.sellable_held(101.0, HOLD)
    never = ready_port(2, registered=False)  # never registered: nothing to hold
    assert not never.sellable_held(0.0, HOLD)
    entries = sellable_entries([info, never, ready_port(3)], rent=False, hold=HOLD, now=101.0)
    assert [e.number for e in entries] == ["+79000000003"]


async def test_a_blip_keeps_the_number_listed_until_the_hold_ends(upstream: Upstream) -> None:
    stub = upstream.stub
    clock = FakeClock(0.0)
    ports = {str(i): ready_port(i) for i in range(3)}
    changed = asyncio.Event()
    changed.set()
    publisher = NumbersPublisher(
        upstream.client,
        lambda: ports.values(),
        changed,
        upstream.journal,
        interval=3600,
        rent=False,
        debounce=0.0,
        startup_grace=3600,
        clock=clock,
        sleep=clock.sleep,
        hold=HOLD,
    )
    async with running(publisher):
        await stub.wait_until(lambda: "+79000000002" in stub.numbers, timeout=WAIT)
        await clock.move_to(10.0)
        lose_registration(ports["1"], 10.0)
        ports["2"].status = PortStatus.BACKOFF  # a real change, published with the blip
        changed.set()
        await stub.wait_until(lambda: "+79000000002" not in stub.numbers, timeout=WAIT)
        assert "+79000000001" in stub.numbers  # the 2 s withdrawal of old is gone
        # A blip that ends inside the hold: nothing is sent for it.
        await clock.move_to(40.0)
        assert "+79000000001" in publisher.published
        # The hold is over: the number is withdrawn without any other change.
        await clock.move_to(10.0 + HOLD)
        await stub.wait_until(lambda: "+79000000001" not in stub.numbers, timeout=WAIT)
    assert "+79000000000" in stub.numbers


async def test_registration_back_inside_the_hold_is_never_withdrawn(upstream: Upstream) -> None:
    stub = upstream.stub
    clock = FakeClock(0.0)
    ports = {str(i): ready_port(i) for i in range(2)}
    changed = asyncio.Event()
    changed.set()
    publisher = NumbersPublisher(
        upstream.client,
        lambda: ports.values(),
        changed,
        upstream.journal,
        interval=3600,
        rent=False,
        debounce=0.0,
        startup_grace=3600,
        clock=clock,
        sleep=clock.sleep,
        hold=HOLD,
    )
    async with running(publisher):
        await stub.wait_until(lambda: "+79000000001" in stub.numbers, timeout=WAIT)
        sent = len([r for r in stub.requests if r.endpoint == "sendNumbersOnline"])
        lose_registration(ports["1"], 0.0)
        changed.set()
        await clock.move_to(20.0)
        ports["1"].registered, ports["1"].unregistered_at = True, None
        changed.set()
        await clock.move_to(200.0)
        ports["0"].status = PortStatus.BACKOFF  # a sync point: this one is withdrawn
        changed.set()
        await stub.wait_until(lambda: "+79000000000" not in stub.numbers, timeout=WAIT)
        assert "+79000000001" in stub.numbers
        sends = [r for r in stub.requests if r.endpoint == "sendNumbersOnline"]
        assert len(sends) == sent + 1
