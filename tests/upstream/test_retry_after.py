"""``Retry-After`` on a 503, in seconds or as an HTTP date, read where the HTTP client fails and
honoured by the loop (capped), over real HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from muxd.errors import UpstreamError
from muxd.store import Journal
from muxd.upstream.backoff import RETRY_AFTER_CAP
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Observer
from muxd.upstream.v1.operations import Reservation, reserve
from muxd.upstream.v1.pusher import Pusher
from muxd.upstream.v2 import V2Client
from muxd_sim.clock import FakeClock
from tests.upstream.outage import PushEndpoint
from tests.v1.conftest import receive

KEY = "k"


@pytest.fixture
async def busy_upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """A v2 upstream answering every request 503 with the Retry-After value in ``values[0]``."""
    values = ["120"]

    async def busy(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy", headers={"Retry-After": values[0]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", busy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", values
    finally:
        await runner.cleanup()


async def test_v2_errors_carry_retry_after_in_seconds_or_as_a_date(
    busy_upstream: tuple[str, list[str]],
) -> None:
    url, values = busy_upstream
    async with aiohttp.ClientSession() as http:
        client = V2Client(http, url, KEY)
        with pytest.raises(UpstreamError) as raised:
            await client.check_work()
        assert raised.value.retry_after == 120.0
        values[0] = email.utils.formatdate(time.time() + 600, usegmt=True)
        with pytest.raises(UpstreamError) as raised:
            await client.check_number("+79001112233")
        assert raised.value.retry_after is not None
        assert 590 <= raised.value.retry_after <= 600
        values[0] = "later"
        with pytest.raises(UpstreamError) as raised:
            await client.add_messages([])
        assert raised.value.retry_after is None


async def test_shipper_waits_as_long_as_retry_after_says_capped(
    busy_upstream: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, values = busy_upstream
    clock = FakeClock()
    journal = await Journal.open(tmp_path)
    try:
        await receive(journal, "+79001112233", "Bank", "code", clock.now)
        async with aiohttp.ClientSession() as http:
            ship = Shipper(
                journal, V2Client(http, url, KEY), batch_max=10, batch_delay=0.0,
                sleep=clock.sleep, clock=clock, timer=clock.monotonic,
            )  # fmt: skip
            assert await ship.ship_once() == 120.0
            values[0] = "86400"  # a day: not believed
            assert await ship.ship_once() == RETRY_AFTER_CAP
    finally:
        await journal.close()


async def test_pusher_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    clock = FakeClock()
    push = PushEndpoint(phase="503", retry_after="90")
    await push.start()
    journal = await Journal.open(tmp_path)
    try:
        number = "+79002220001"
        await reserve(
            journal, Reservation(number, "rent", "ru", "mts", None, True, clock.now - 60, None)
        )
        await receive(journal, number, "Bank", "code", clock.now)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{push.port}/v1/PUSH_SMS"
            pusher = Pusher(
                journal, http, api_key=KEY, url=url, rent_url=url, filters={}, gzip_body=False,
                clock=clock, sleep=clock.sleep, observer=V1Observer(),
            )  # fmt: skip
            task = asyncio.create_task(pusher.run())
            try:
                # Idle only while no push is in flight: else the clock jumps to the next
                # wake-up (the idle poll) while a request is on its way, and the failure is
                # stamped later than the attempt the backoff counts from.
                await clock.run_until(
                    lambda: not pusher.loop.ok and pusher.sending == 0,
                    lambda: pusher.sending == 0,
                )
                failed_at = clock.now
                await clock.run_until(
                    lambda: push.requests["503"] == 2, lambda: pusher.sending == 0
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert clock.now - failed_at == pytest.approx(90.0)  # not the spec's 10 s
    finally:
        await journal.close()
        await push.close()
