"""Adaptive shipping against the real stand-in: at once when idle, together under load.

The stand-in's application gets a gate in front of it: a request can be held on the wire
while SMS keep arriving, and released when the test says so. Time is virtual where it matters
(the optional ``batch_delay`` cap, the backoff of an outage).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from muxd.config import UpstreamConfig
from muxd.store import Journal
from muxd.upstream.shipper import RETRY_FLOOR, Shipper
from muxd.upstream.v2 import NumberEntry, V2Client
from muxd_sim.onlinesim import Onlinesim, make_app
from tests.upstream.conftest import KEY, NUMBERS, Upstream

# Bounds on waits for something the test caused; they only stop a hang.
WAIT = 10.0
# The default of [upstream] batch_delay, as a config without the key reads it.
DEFAULT_DELAY = UpstreamConfig(api_key=KEY).batch_delay

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Gate:
    """Holds addMessages requests on the wire while closed; records each request's size."""

    open: asyncio.Event = field(default_factory=asyncio.Event)
    sizes: list[int] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith("/addMessages"):
            return await handler(request)
        body = msgspec.json.decode(await request.read())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        async with self.arrived:
            self.sizes.append(len(body["messages"]))
            self.arrived.notify_all()
        try:
            await self.open.wait()
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def wait_requests(self, n: int) -> None:
        async with asyncio.timeout(WAIT), self.arrived:
            await self.arrived.wait_for(lambda: len(self.sizes) >= n)


class VirtualClock:
    """Monotonic time and sleep that move only when the test advances them."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, fut))
        self._changed.set()
        await fut

    def sleeping(self) -> list[float]:
        """When each pending sleep ends."""
        return sorted(due for due, fut in self._sleepers if not fut.done())

    async def wait_sleeping(self) -> float:
        """Until something sleeps; returns when the first pending sleep ends."""
        async with asyncio.timeout(WAIT):
            while not self.sleeping():
                self._changed.clear()
                await self._changed.wait()
        return self.sleeping()[0]

    def advance_to(self, when: float) -> None:
        self.now = when
        for due, fut in self._sleepers:
            if due <= when and not fut.done():
                fut.set_result(None)
        self._sleepers = [(d, f) for d, f in self._sleepers if not f.done()]


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[Upstream, Gate]]:
    stub = Onlinesim(api_key=KEY)
    gate = Gate()
    gate.open.set()
    app = make_app(stub)
    app.middlewares.append(gate.middleware)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    journal = await Journal.open(tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            client = V2Client(http, url, KEY)
            await client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in NUMBERS])
            yield Upstream(stub=stub, client=client, journal=journal, url=url, http=http), gate
    finally:
        await journal.close()
        await runner.cleanup()


async def start(ship: Shipper, journal: Journal) -> asyncio.Task[None]:
    """Run ``ship`` and return once its first look at the journal (on start) is done."""
    task = asyncio.create_task(ship.run())
    await asyncio.sleep(0)  # one turn: the task runs up to its first journal operation
    await journal.pending(1)  # committed after it, in order
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("delay", [DEFAULT_DELAY, 0.0], ids=["default", "zero"])
async def test_the_default_config_sends_one_sms_at_once(
    gated: tuple[Upstream, Gate], delay: float | None
) -> None:
    up, gate = gated
    clock = VirtualClock()
    ship = Shipper(
        up.journal, up.client, batch_max=10, batch_delay=delay, sleep=clock.sleep, timer=clock
    )
    task = await start(ship, up.journal)
    try:
        await up.receive(NUMBERS[0], "Bank", "code 1")
        await gate.wait_requests(1)
        await up.stub.wait_for_messages(1)
        # Sent without waiting for anything: the virtual clock never moved, nothing slept.
        assert clock.now == 0.0
        assert clock.sleeping() == []
        assert gate.sizes == [1]
    finally:
        await stop(task)


async def test_sms_arriving_during_a_request_go_together_in_the_next(
    gated: tuple[Upstream, Gate],
) -> None:
    up, gate = gated
    clock = VirtualClock()
    ship = Shipper(
        up.journal, up.client, batch_max=3, batch_delay=DEFAULT_DELAY,
        sleep=clock.sleep, timer=clock,
    )  # fmt: skip
    task = await start(ship, up.journal)
    try:
        gate.open.clear()
        await up.receive(NUMBERS[0], "Bank", "first")
        await gate.wait_requests(1)  # on the wire, held
        for i in range(5):
            await up.receive(NUMBERS[i % 3], "Bank", f"while in flight {i}")
        assert gate.sizes == [1]  # one request in flight at a time
        gate.open.set()
        await up.stub.wait_for_messages(6)
        # The five that waited go in full batches as soon as the first request returned.
        assert gate.sizes == [1, 3, 2]
        assert gate.most_in_flight == 1
        assert [m.message for m in up.stub.messages] == [
            "first",
            *(f"while in flight {i}" for i in range(5)),
        ]
        assert clock.now == 0.0  # nothing waited to fill
        assert clock.sleeping() == []
    finally:
        await stop(task)


async def test_batch_delay_caps_the_wait_of_a_batch(gated: tuple[Upstream, Gate]) -> None:
    up, gate = gated
    clock = VirtualClock()
    ship = Shipper(
        up.journal, up.client, batch_max=3, batch_delay=1.0, sleep=clock.sleep, timer=clock
    )
    task = await start(ship, up.journal)
    try:
        # An SMS alone waits for company, at most 1 s.
        await up.receive(NUMBERS[0], "Bank", "a")
        assert await clock.wait_sleeping() == 1.0
        clock.advance_to(0.5)
        await up.receive(NUMBERS[1], "Bank", "b")
        assert await clock.wait_sleeping() == 1.0  # the deadline is the first SMS's
        assert gate.sizes == []
        clock.advance_to(1.0)
        await gate.wait_requests(1)
        assert gate.sizes == [2]
        await up.stub.wait_for_messages(2)
        # An SMS that arrives during a request has waited since then: it leaves at most 1 s
        # after it arrived, however long the request took.
        gate.open.clear()
        await up.receive(NUMBERS[0], "Bank", "f")
        await clock.wait_sleeping()
        clock.advance_to(2.0)
        await gate.wait_requests(2)  # "f" is on the wire, held
        clock.advance_to(2.2)
        await up.receive(NUMBERS[0], "Bank", "g")  # arrives at 2.2
        clock.advance_to(2.8)
        gate.open.set()
        await up.stub.wait_for_messages(3)
        due = await clock.wait_sleeping()
        assert due <= 3.2
        clock.advance_to(due)
        await up.stub.wait_for_messages(4)
        # A full batch does not wait.
        for text in ("c", "d", "e"):
            await up.receive(NUMBERS[2], "Bank", text)
        await up.stub.wait_for_messages(7)
        assert clock.now == due
        assert gate.sizes == [2, 1, 1, 3]
        assert gate.most_in_flight == 1
        assert [m.message for m in up.stub.messages] == ["a", "b", "f", "g", "c", "d", "e"]
    finally:
        await stop(task)


async def test_an_outage_does_not_make_the_adaptive_loop_spin(
    gated: tuple[Upstream, Gate],
) -> None:
    up, _ = gated
    clock = VirtualClock()
    ship = Shipper(
        up.journal, up.client, batch_max=10, batch_delay=DEFAULT_DELAY,
        sleep=clock.sleep, timer=clock,
    )  # fmt: skip
    up.stub.set_down(True)
    task = await start(ship, up.journal)
    sent = 0
    try:
        # An hour of 503s (each answered at once) while an SMS arrives every 10 s: every
        # arrival wakes the loop, and none may cut the backoff short.
        while clock.now < 3600:
            await up.receive(NUMBERS[sent % 3], "Svc", f"sms {sent}")
            sent += 1
            due = await clock.wait_sleeping()
            assert due >= clock.now + RETRY_FLOOR or due > clock.now  # never an instant retry
            clock.advance_to(min(due, clock.now + 10.0))
        # The last advance may have woken the shipper: let its attempt fail and the shipper
        # fall asleep again before anything is counted or the upstream comes back.
        due = await clock.wait_sleeping()
        attempts = len([r for r in up.stub.requests if r.endpoint == "addMessages"])
        # Capped backoff: a bounded number of requests, however often SMS arrive.
        assert 5 <= attempts <= 40
        up.stub.set_down(False)
        clock.advance_to(due)
        await up.stub.wait_for_messages(sent)
        assert [m.message for m in up.stub.messages] == [f"sms {i}" for i in range(sent)]
        assert up.stub.duplicates == 0
    finally:
        await stop(task)


async def test_an_idle_shipper_takes_each_sms_in_the_transaction_that_stores_it(
    gated: tuple[Upstream, Gate], tmp_path: Path
) -> None:
    # One hand-off to the journal's thread per SMS, not two (store, then take): the idle
    # shipper's take rides in the SMS's own transaction. Deferred writes (the delivered mark)
    # ride too: their timer never fires here.
    up, _gate = gated
    never = asyncio.Event()

    async def no_timer(delay: float) -> None:
        await never.wait()

    journal = await Journal.open(tmp_path / "own", sleep=no_timer)
    mine = Upstream(stub=up.stub, client=up.client, journal=journal, url=up.url, http=up.http)
    ship = Shipper(journal, up.client, batch_max=10)
    task = await start(ship, journal)
    try:
        for i in range(5):
            async with asyncio.timeout(WAIT):
                # Idle again (the last answer handled): a yield per turn, no time passes.
                while not journal.riding:  # noqa: ASYNC110
                    await asyncio.sleep(0)
            before = journal.transactions
            await mine.receive(NUMBERS[0], "Bank", f"code {i}")
            await up.stub.wait_for_messages(i + 1)
            assert journal.transactions == before + 1
    finally:
        await stop(task)
        never.set()
        await journal.close()
