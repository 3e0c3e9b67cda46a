"""What a one-hour Onlinesim outage costs each upstream loop: requests and log lines.

Run: ``python -m benchmarks.upstream_outage``

Each loop (numbers publisher in list and in incremental mode, SMS shipper, v1 PUSH_SMS pusher)
runs against a real aiohttp upstream on loopback through a real client session, on a virtual
clock (the hour passes in about a second): 15 minutes of 503, 15 of dropped connections, 15 of
refused connections, 15 of DNS failure (an unresolvable ``.invalid`` name), then the upstream
comes back and the loop drains. Printed per loop: connection attempts per phase (counted by the
resolver: every request resolves the name), requests the server saw, muxd log lines at INFO and
above during the hour, and whether everything arrived exactly once afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from muxd.ports import PortStatus
from muxd.store import Journal
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Observer
from muxd.upstream.v1.operations import Reservation, reserve
from muxd.upstream.v1.pusher import Pusher
from muxd.upstream.v2 import NumberEntry, V2Client
from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim import Onlinesim, serve
from tests.upstream.outage import (
    HOST,
    PHASES,
    Phase,
    PhaseResolver,
    PushEndpoint,
    one_hour_outage,
    session,
)
from tests.upstream.test_publisher import ready_port
from tests.v1.conftest import receive

KEY = "bench-key"
HEARTBEAT = 240.0
PORTS = 20  # numbers the publisher lists
SMS_PER_PHASE = 5  # SMS arriving during each phase of the outage


class LineCounter(logging.Handler):
    """Counts muxd's own log records (not the stand-in's) at INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("muxd_sim"):
            self.lines += 1


port = ready_port  # the publisher tests' ready, registered, numbered port


Result = dict[str, object]


async def _v2(
    tmp: Path, run: Callable[[Onlinesim, PhaseResolver, V2Client, Journal], Awaitable[Result]]
) -> Result:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    resolver = PhaseResolver(served.port)
    journal = await Journal.open(tmp)
    try:
        async with session(resolver) as http:
            client = V2Client(http, f"http://{HOST}:{served.port}", KEY)
            return await run(stub, resolver, client, journal)
    finally:
        await journal.close()
        await resolver.close()
        await served.runner.cleanup()


async def _measure(
    clock: FakeClock,
    resolver: PhaseResolver,
    counter: LineCounter,
    server: Callable[[], int],
    **outage: object,
) -> Result:
    before_server = server()
    before_lines = counter.lines
    await one_hour_outage(clock, resolver, **outage)  # type: ignore[arg-type]
    return {
        "attempts": {p: resolver.attempts[p] for p in PHASES},
        "server_requests": server() - before_server,
        "log_lines": counter.lines - before_lines,
    }


async def publisher(tmp: Path, counter: LineCounter, *, incremental: bool) -> Result:
    async def run(
        stub: Onlinesim, resolver: PhaseResolver, client: V2Client, journal: Journal
    ) -> Result:
        clock = FakeClock()
        ports = {str(i): port(i) for i in range(PORTS)}
        changed = asyncio.Event()
        pub = NumbersPublisher(
            client,
            lambda: ports.values(),
            changed,
            journal,
            interval=HEARTBEAT,
            rent=False,
            incremental=incremental,
            startup_grace=0.0,
            clock=clock,
            sleep=clock.sleep,
        )

        def wanted() -> set[str]:
            return {p.number for p in ports.values() if p.sellable and p.number}

        def change(phase: Phase) -> None:
            ports[f"new-{phase}"] = port(100 + PHASES.index(phase))
            ports[str(PHASES.index(phase))].status = PortStatus.BACKOFF
            changed.set()

        task = asyncio.create_task(pub.run())
        try:
            await clock.run_until(lambda: set(stub.numbers) == wanted())
            result = await _measure(
                clock, resolver, counter, lambda: len(stub.requests), stub=stub, during=change
            )
            await clock.run_until(
                lambda: set(stub.numbers) == wanted() and all(x.ok for x in pub.loops)
            )
            result["after"] = f"{len(stub.numbers)} listed = {len(wanted())} sellable"
            return result
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return await _v2(tmp, run)


async def shipper(tmp: Path, counter: LineCounter) -> Result:
    async def run(
        stub: Onlinesim, resolver: PhaseResolver, client: V2Client, journal: Journal
    ) -> Result:
        clock = FakeClock()
        numbers = [f"+7900{i:07d}" for i in range(3)]
        await client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in numbers])
        ship = Shipper(
            journal, client, batch_max=10, batch_delay=0.0, sleep=clock.sleep, clock=clock,
            timer=clock.monotonic,
        )  # fmt: skip
        sent: list[str] = []

        async def arrive(phase: Phase) -> None:
            for k in range(SMS_PER_PHASE):
                sent.append(f"{phase} {k}")
                await receive(journal, numbers[k % 3], "Bank", sent[-1], clock.now)

        task = asyncio.create_task(ship.run())
        try:
            result = await _measure(
                clock, resolver, counter, lambda: len(stub.requests), stub=stub, during=arrive
            )
            await clock.run_until(lambda: len(stub.messages) == len(sent))
            got = sorted(m.message for m in stub.messages)
            result["after"] = (
                f"{len(got)}/{len(sent)} SMS delivered, exact={got == sorted(sent)}, "
                f"duplicates={stub.duplicates}"
            )
            return result
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return await _v2(tmp, run)


async def pusher(tmp: Path, counter: LineCounter) -> Result:
    clock = FakeClock()
    push = PushEndpoint()
    await push.start()
    resolver = PhaseResolver(push.port)
    journal = await Journal.open(tmp)
    numbers = [f"+7900222{i:04d}" for i in range(3)]
    try:
        for number in numbers:
            await reserve(
                journal,
                Reservation(number, "rent", "russia", "mts", None, True, clock.now - 60, None),
            )
        async with session(resolver) as http:
            url = f"http://{HOST}:{push.port}/v1/PUSH_SMS"
            p = Pusher(
                journal, http, api_key=KEY, url=url, rent_url=url, filters={}, gzip_body=False,
                clock=clock, sleep=clock.sleep, observer=V1Observer(),
            )  # fmt: skip
            ids: list[int] = []

            async def arrive(phase: Phase) -> None:
                for k in range(SMS_PER_PHASE):
                    ids.append(await receive(journal, numbers[k % 3], "Bank", phase, clock.now))

            def idle() -> bool:
                return p.sending == 0

            task = asyncio.create_task(p.run())
            try:
                result = await _measure(
                    clock,
                    resolver,
                    counter,
                    lambda: sum(push.requests.values()),
                    push=push,
                    idle=idle,
                    during=arrive,
                )
                await clock.run_until(lambda: len(push.accepted) >= len(ids), idle)
                result["after"] = (
                    f"{len(set(push.accepted))}/{len(ids)} pushed, "
                    f"exact={sorted(push.accepted) == sorted(ids)}"
                )
                return result
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await journal.close()
        await resolver.close()
        await push.close()


async def main() -> None:
    counter = LineCounter()
    muxd_log = logging.getLogger("muxd")
    muxd_log.addHandler(counter)
    muxd_log.setLevel(logging.INFO)
    muxd_log.propagate = False
    print(f"one-hour outage ({', '.join(PHASES)}, 15 min each), virtual clock")
    print(f"{'loop':<24}{'attempts per phase':<44}{'total':>6}{'server':>8}{'log':>5}  after")
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Callable[[Path], Awaitable[Result]]]] = [
            ("publisher (list)", lambda d: publisher(d, counter, incremental=False)),
            ("publisher (incremental)", lambda d: publisher(d, counter, incremental=True)),
            ("shipper", lambda d: shipper(d, counter)),
            ("pusher (v1)", lambda d: pusher(d, counter)),
        ]
        for k, (name, run) in enumerate(runs):
            directory = Path(tmp) / str(k)
            directory.mkdir()
            r = await run(directory)
            per_phase = r["attempts"]
            assert isinstance(per_phase, dict)
            phases = " ".join(f"{p}={n}" for p, n in per_phase.items())
            total = sum(per_phase.values())
            print(
                f"{name:<24}{phases:<44}{total:>6}{r['server_requests']:>8}{r['log_lines']:>5}"
                f"  {r['after']}"
            )


if __name__ == "__main__":
    asyncio.run(main())
