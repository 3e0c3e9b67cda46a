"""The numbers publisher against the real stand-in, both modes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from muxd.ports import PortInfo, PortStatus
from muxd.upstream.publisher import NumbersPublisher
from tests.upstream.conftest import Upstream

DEBOUNCE = 0.05
WAIT = 10.0


def ready_port(i: int, *, registered: bool = True) -> PortInfo:
    return PortInfo(
        name=f"port{i:03d}",
        path=f"/dev/x{i}",
        status=PortStatus.READY,
        imsi=f"25001{i:010d}",
        iccid=f"8970101{i:012d}",
        number=f"+7900{i:07d}",
        operator=25001,
        country_id=7,
        registered=registered,
        since=1_764_000_000.0,
    )


@contextlib.asynccontextmanager
async def running(publisher: NumbersPublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(
    up: Upstream, ports: dict[str, PortInfo], changed: asyncio.Event, *, incremental: bool
) -> NumbersPublisher:
    return NumbersPublisher(
        up.client,
        lambda: ports.values(),
        changed,
        up.journal,
        interval=3600,
        rent=False,
        incremental=incremental,
        debounce=DEBOUNCE,
        startup_grace=3600,
    )


async def test_list_mode_publishes_a_burst_as_one_request(upstream: Upstream) -> None:
    stub = upstream.stub
    ports: dict[str, PortInfo] = {}
    changed = asyncio.Event()
    before = len(stub.requests)
    async with running(make(upstream, ports, changed, incremental=False)):
        for i in range(50):
            ports[str(i)] = ready_port(i, registered=i % 10 != 0)  # 5 not registered
            changed.set()
        await stub.wait_until(lambda: len(stub.numbers) == 45, timeout=WAIT)
        sent = [r for r in stub.requests[before:] if r.endpoint == "sendNumbersOnline"]
        assert len(sent) == 1
        entry = stub.numbers["+79000000001"]
        assert (entry.country_id, entry.operator, entry.port_id) == (7, 25001, "port001")
        assert entry.date_start == 1_764_000_000
        # A port going down withdraws its number with the next (debounced) list.
        ports["1"].status = PortStatus.BACKOFF
        changed.set()
        await stub.wait_until(lambda: "+79000000001" not in stub.numbers, timeout=WAIT)
    assert len(stub.numbers) == 44


async def test_incremental_adds_removes_and_reconciles_after_restart(upstream: Upstream) -> None:
    stub = upstream.stub
    ports = {str(i): ready_port(i) for i in range(4)}
    changed = asyncio.Event()
    changed.set()
    async with running(make(upstream, ports, changed, incremental=True)):
        await stub.wait_until(lambda: {"+79000000003"} <= set(stub.numbers), timeout=WAIT)
        ports["2"].registered = False
        changed.set()
        await stub.wait_until(lambda: "+79000000002" not in stub.numbers, timeout=WAIT)
    adds = [r for r in stub.requests if r.endpoint == "addNumber"]
    assert len(adds) == 4
    # While we are down, port 3 loses its SIM; on restart only the difference is sent.
    del ports["3"]
    before = len(stub.requests)
    changed.set()
    async with running(make(upstream, ports, changed, incremental=True)):
        await stub.wait_until(lambda: "+79000000003" not in stub.numbers, timeout=WAIT)
    endpoints = [r.endpoint for r in stub.requests[before:]]
    # Nothing unchanged is re-added (a removal whose journal record was cut short by the
    # stop may be repeated: the stand-in answers NO_NUMBER, which counts as gone).
    assert set(endpoints) == {"removeNumber"}
    assert {"+79000000000", "+79000000001"} <= set(stub.numbers)
