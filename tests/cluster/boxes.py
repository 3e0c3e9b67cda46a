"""Boxes of a cluster as separate ``muxd run`` processes on simulated modems (pseudo-terminals
driven from the test), sharing one throwaway PostgreSQL; the Onlinesim stand-in (V1Driver)
calls their v1 servers and receives their PUSH_SMS."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from muxd.cluster.records import ClusterUnavailable
from muxd.cluster.store import ClusterStore
from muxd_sim.ledger import Ledger
from muxd_sim.modem import ModemSimulator, write_numbers_csv
from muxd_sim.modem_state import DEFAULT_CAPACITY
from muxd_sim.onlinesim_v1 import V1Driver

KEY = "cluster-partner-key"
SERVICES = ["vk", "wa", "tg"]
# Bounds on waits for what a box does by itself (start, publish, push): a loaded machine.
START_WAIT = 60.0
WAIT = 30.0
POLL = 0.1
# The load: SMS per second over every box's SIMs, from this sender.
RATE = 30.0
SENDER = "VK"
# A short lease, so a dead box leaves the counts quickly (the config's minimum is 3 s).
LEASE = 3.0
STOP_WAIT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The boxes' event loop: asyncio's in the tests; the benchmark measures uvloop, as `muxd run`
# runs by default.
UVLOOP = False


@dataclass
class Box:
    name: str
    tmp: Path
    sim: ModemSimulator
    dsn: str
    driver: V1Driver
    # API v2 instead of v1: the URL of Onlinesim's stand-in (the fleet's list, in list mode).
    upstream: str | None = None
    v1_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.v1_port}"

    @property
    def numbers(self) -> list[str]:
        return [p.number for p in self.sim.ports]

    @property
    def prefix(self) -> str:
        """The digits all of this box's numbers start with (an exception mask)."""
        digits = [n.lstrip("+") for n in self.numbers]
        common = digits[0]
        while not all(d.startswith(common) for d in digits):
            common = common[:-1]
        return common

    def config(self) -> Path:
        path = self.tmp / f"{self.name}.toml"
        upstream = (
            f"""
[upstream]
api = "v1"
api_key = "{KEY}"
[v1]
listen = "127.0.0.1:{self.v1_port}"
push_sms_url = "{self.driver.push_url}"
push_sms_rent_url = "{self.driver.rent_url}"
services = {SERVICES!r}
rent = true"""
            if self.upstream is None
            else f"""
[upstream]
api = "v2"
url = "{self.upstream}"
api_key = "{KEY}"
numbers_mode = "list"
"""
        )
        path.write_text(
            f"""
state_dir = "{self.tmp / self.name / "state"}"
[modems]
ports = ["{self.tmp / self.name / "dev" / "port*"}"]
[numbers]
file = "{self.tmp / self.name / "numbers.csv"}"
[http]
listen = "127.0.0.1:{self.http_port}"
{upstream}
[cluster]
database = "{self.dsn}"
box = "{self.name}"
lease = {LEASE}
""".replace("'", '"')
        )
        return path

    async def start(self) -> None:
        log = (self.tmp / f"{self.name}.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "muxd", "run", "-c", str(self.config()),
            *([] if UVLOOP else ["--no-uvloop"]), stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

    def log(self) -> str:
        path = self.tmp / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_WAIT):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def wait_dead(self) -> None:
        assert self.proc is not None
        async with asyncio.timeout(STOP_WAIT):
            await self.proc.wait()
        self.proc = None

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/metrics") as resp,
        ):
            return await resp.text()

    async def totals(self) -> dict[str, Any]:
        """The box's ``/api/totals`` (the v1 service's queues among them)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/api/totals") as resp,
        ):
            answer: dict[str, Any] = await resp.json()
            return answer


async def call(driver: V1Driver, box: Box, method: str, *args: Any, **kw: Any) -> Any:
    """One driver call against ``box`` (the driver talks to one URL at a time)."""
    driver.base_url = box.url
    return await getattr(driver, method)(*args, **kw)


def tails(boxes: Sequence[Box]) -> str:
    """The end of each box's log, for a failure's message."""
    return "\n".join(f"--- {b.name}\n{b.log()[-3000:]}" for b in boxes)


async def until(
    check: Callable[[], Awaitable[bool]], what: str, limit: float = WAIT, boxes: Sequence[Box] = ()
) -> float:
    """Poll the async ``check`` until true; the seconds it took (fails past ``limit``)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise AssertionError(f"{what}: not within {limit} s\n{tails(boxes)}")
        await asyncio.sleep(POLL)
    return time.monotonic() - start


async def live_counts(observer: ClusterStore) -> dict[str, int]:
    """Live numbers per box, as the fleet's counts see them."""
    out: dict[str, int] = {}
    try:
        for n in await observer.live_numbers():
            out[n.box] = out.get(n.box, 0) + 1
    except (ClusterUnavailable, asyncpg.PostgresError):  # not migrated by a box yet
        return {}
    return out


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path,
    dsn: str,
    names: list[str],
    ports: int,
    *,
    capacity: int = DEFAULT_CAPACITY,
    upstream: str | None = None,
) -> AsyncIterator[tuple[list[Box], V1Driver, ClusterStore]]:
    """Start a box per name (``ports`` simulated modems each, ``capacity`` SMS per SIM; API v2
    to ``upstream`` when given) and wait until every box's numbers count; yield the boxes, the
    driver and an observing store."""
    async with contextlib.AsyncExitStack() as stack:
        driver = await stack.enter_async_context(V1Driver(api_key=KEY))
        boxes = []
        for i, name in enumerate(names):
            (tmp / name / "dev").mkdir(parents=True)
            sim = await stack.enter_async_context(
                ModemSimulator(ports, tmp / name / "dev", seed=i + 1, capacity=capacity)
            )
            write_numbers_csv(sim, tmp / name / "numbers.csv", share=1.0)
            boxes.append(Box(name, tmp, sim, dsn, driver, upstream))
        observer = await stack.enter_async_context(ClusterStore(dsn, "observer"))
        try:
            for box in boxes:
                await box.start()

            async def all_live() -> bool:
                counts = await live_counts(observer)
                return all(counts.get(b.name) == ports for b in boxes)

            await until(all_live, "every box's numbers in the cluster", START_WAIT, boxes)
            yield boxes, driver, observer
        finally:
            for box in boxes:
                await box.stop()


class Load:
    """SMS injected round-robin over the boxes' SIMs at :data:`RATE`, each with a text of its
    own. One to a number in an operation (v1; in v2, a listed number) goes into the ledger (it
    must be delivered once); the others are counted apart (they must not be)."""

    def __init__(self, boxes: Sequence[Box], rate: float = RATE) -> None:
        self.boxes = list(boxes)
        self.rate = rate
        self.ledger = Ledger()
        self.in_operation: set[str] = set()
        self.quiet: set[str] = set()  # numbers whose SIMs get nothing for now
        self.stray = 0  # SMS to numbers in no operation

    def opened(self, number: str) -> None:
        self.quiet.discard(number)
        self.in_operation.add(number)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._inject())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _inject(self) -> None:
        ports = [(box, port) for box in self.boxes for port in box.sim.ports]
        started, k = time.monotonic(), 0
        while True:
            reached = [(box, port) for box, port in ports if port.number not in self.quiet]
            box, port = reached[k % len(reached)]
            k += 1
            text = f"VK: {k:06d} is your code"
            box.sim.inject(port.index, SENDER, text)
            if port.number in self.in_operation:
                self.ledger.add(port.number, SENDER, text, t=time.time())
            else:
                self.stray += 1
            await asyncio.sleep(max(0.0, started + k / self.rate - time.monotonic()))
