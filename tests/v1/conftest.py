"""API v1 fixtures: a real journal file, a real V1Service on loopback, the Onlinesim stand-in
(V1Driver) receiving PUSH_SMS, fake ports, and an injected clock (nothing waits 15 minutes)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from muxd.config import FilterRule, V1Config
from muxd.numbering import calling_code
from muxd.pdu import encode_deliver
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal, PartIn
from muxd.upstream.v1 import V1Observer, V1Service
from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim_v1 import V1Driver

if TYPE_CHECKING:
    from muxd.app import Daemon

KEY = "v1-partner-key"
SERVICES = ["vk", "wa", "tg"]
# Bounds on waits for something the test caused; they only stop a hang.
WAIT = 10.0
_parts = itertools.count(1)


def fake_clock() -> FakeClock:
    """The injected clock: the wall clock starts at the real time (SMS stamps are real), the
    monotonic one at 1000; sleeps run on the monotonic clock, as asyncio's do."""
    return FakeClock(time.time(), mono=1000.0)


class Recorder(V1Observer):
    """Records every metric call; ``wait_for`` blocks until a predicate holds."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.pushes: list[str] = []
        self.open_counts: list[int] = []
        self.no_user_agent = 0
        self._changed = asyncio.Condition()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def request(self, action: str, result: str, seconds: float) -> None:
        self.requests.append((action, result))
        self._notify()

    def push(self, result: str) -> None:
        self.pushes.append(result)
        self._notify()

    def operations_open(self, count: int) -> None:
        self.open_counts.append(count)
        self._notify()

    def missing_user_agent(self) -> None:
        self.no_user_agent += 1

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)


def port(number: str, operator: int | None = 25001, *, index: int = 0) -> PortInfo:
    return PortInfo(
        name=f"port{index:03d}",
        path=f"/dev/fake{index}",
        status=PortStatus.READY,
        number=number,
        operator=operator,
        country_id=calling_code(number),
        registered=True,
        iccid=f"8970100000{index:05d}",
    )


def ports_for(numbers: list[str], operator: int | None = 25001) -> list[PortInfo]:
    return [port(n, operator, index=i) for i, n in enumerate(numbers)]


async def receive(
    journal: Journal,
    number: str,
    sender: str,
    text: str,
    received_at: float,
    *,
    stamp: float | None = None,
) -> int:
    """Journal one SMS as the fleet's sink would; return its message id. ``stamp``: the SMSC
    time stamp (default: the read time, to the second)."""
    k = next(_parts)
    scts = datetime.fromtimestamp(int(received_at if stamp is None else stamp), UTC)
    # A distinct SMSC address per part keeps equal texts at equal times distinct PDUs.
    (enc,) = encode_deliver(sender, text, scts=scts, smsc=f"+1000{k:07d}")
    result = await journal.put_part(
        PartIn(
            sim=f"sim-{number}",
            port="port000",
            number=number,
            storage="SM",
            index=k,
            pdu=enc.hex,
            tpdu_length=enc.tpdu_length,
            received_at=received_at,
        )
    )
    assert result.message_id is not None
    return result.message_id


def make_config(driver: V1Driver, **overrides: Any) -> V1Config:
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "push_sms_url": driver.push_url,
        "push_sms_rent_url": driver.rent_url,
        "services": SERVICES,
        "rent": True,
    }
    base.update(overrides)
    return V1Config(**base)


@contextlib.asynccontextmanager
async def running(svc: V1Service) -> AsyncIterator[V1Service]:
    task = asyncio.create_task(svc.run())
    started = asyncio.ensure_future(svc.started.wait())
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.wait((started, task), return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raise what killed it
        yield svc
    finally:
        started.cancel()  # never set when the service failed to start
        task.cancel()
        await asyncio.gather(started, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Env:
    tmp: Path
    journal: Journal
    driver: V1Driver
    clock: FakeClock
    http: aiohttp.ClientSession
    ports: list[PortInfo] = field(default_factory=list)
    observer: Recorder = field(default_factory=Recorder)

    def service(self, **overrides: Any) -> V1Service:
        options = {
            k: overrides.pop(k)
            for k in ("sms_id", "retry_verdicts", "status1_blocks", "id_bits", "retention")
            if k in overrides
        }
        return V1Service(
            make_config(self.driver, **overrides),
            KEY,
            self.journal,
            lambda: self.ports,
            self.http,
            clock=self.clock,
            sleep=self.clock.sleep,
            monotonic=self.clock.monotonic,
            observer=self.observer,
            **options,
        )

    @contextlib.asynccontextmanager
    async def serving(self, **overrides: Any) -> AsyncIterator[V1Service]:
        svc = self.service(**overrides)
        async with running(svc):
            self.driver.base_url = f"http://127.0.0.1:{svc.port}"
            yield svc

    async def sms(self, number: str, sender: str, text: str, *, stamp: float | None = None) -> int:
        return await receive(self.journal, number, sender, text, self.clock(), stamp=stamp)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    journal = await Journal.open(tmp_path / "state")
    try:
        async with V1Driver(KEY) as driver, aiohttp.ClientSession() as http:
            yield Env(tmp_path, journal, driver, fake_clock(), http)
    finally:
        await journal.close()


RUSSIA = [f"+7900111000{i}" for i in range(5)]


def filters(**rules: FilterRule) -> dict[str, FilterRule]:
    return dict(rules)


async def wait_stats(
    env: Env, key: str, value: int, *, tick: float = 0.0, timeout: float = WAIT
) -> None:
    """Until the journal counts ``value`` for ``key`` (a pass of the pusher made it so);
    ``tick``: move the injected clock this much between looks (wakes a sleeping pusher)."""
    async with asyncio.timeout(timeout):
        while (await env.journal.stats()).get(key, 0) != value:
            if tick:
                await env.clock.advance(tick)
            await asyncio.sleep(0.01)


async def v1_ready(daemon: Daemon, ports: int) -> None:
    """Return once the daemon's v1 service is up and ``ports`` of its ports are sellable (the
    caller bounds the wait)."""
    await daemon.started.wait()
    assert daemon.v1 is not None
    await daemon.v1.started.wait()
    while sum(1 for p in daemon.status.ports() if p.sellable) < ports:
        assert daemon.fleet is not None
        daemon.fleet.changed.clear()
        await daemon.fleet.changed.wait()
