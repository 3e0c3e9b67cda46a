"""GET_NUMBER's reservation in the cluster's PostgreSQL: latency at 100 concurrent requests.

Three boxes of 256 ports each publish their numbers into a throwaway PostgreSQL (or the one
``--dsn`` names); each box has its own connection pool, as three muxd processes would.

- burst: ``--concurrency`` GET_NUMBERs start at once and each is timed (its reservation in the
  database: choose, lock, insert, notify); when all are answered their operations are finished
  (not timed) and the next burst starts, ``--bursts`` times.
- sustained: ``--concurrency`` clients each reserve and at once finish (FINISH_ACTIVATION,
  status 4, which frees the number), back to back, ``--requests`` in all: the throughput the
  database sustains, with the latency that queueing at that rate adds.

Each runs twice: requests spread over the three boxes (a load balancer in front), and all
through box1 with its own SIMs off-line, so every number it hands out is on another box.
Everything (PostgreSQL and the three boxes' clients) shares this machine's cores.

    python -m benchmarks.cluster_reserve [--concurrency 100] [--bursts 30] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from muxd.cluster.lease import LeaseKeeper
from muxd.cluster.records import NumberEntry, Operation
from muxd.cluster.store import POOL_MAX, ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres

BOXES = ("box1", "box2", "box3")
COUNTRIES = (("germany", "49", ("vodafone", "o2", "telekom")), ("russia", "7", ("mts", "beeline")))
SERVICES = ("vk", "wa", "tg", "fb")
# A typical exceptionPhoneSet: a few prefixes that exclude some numbers.
MASKS = ("4915199", "79990", "4917")


def numbers_of(box_index: int, ports: int) -> list[NumberEntry]:
    out = []
    for i in range(ports):
        country, code, operators = COUNTRIES[i % len(COUNTRIES)]
        digits = f"{code}{150 + box_index:03d}{i:07d}"
        out.append(
            NumberEntry(
                number="+" + digits,
                port=f"/dev/ttyUSB{i}",
                iccid=f"89{digits:0>17}",
                country=country,
                country_id=int(code),
                operator=operators[i % len(operators)],
            )
        )
    return out


def percentiles(samples: Sequence[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"p50 {at(0.50):6.2f} ms  p90 {at(0.90):6.2f} ms  p99 {at(0.99):6.2f} ms"
        f"  max {ordered[-1] * 1000:6.2f} ms  mean {statistics.fmean(ordered) * 1000:6.2f} ms"
    )


def request_args(i: int) -> dict[str, object]:
    country, _, operators = COUNTRIES[i % len(COUNTRIES)]
    return {
        "country": country,
        "operator": "any" if i % 3 else operators[i % len(operators)],
        "service": SERVICES[i % len(SERVICES)],
        "masks": MASKS,
        "sum": 4.5,
    }


async def timed_reserve(store: ClusterStore, i: int) -> tuple[float, Operation | None]:
    start = time.perf_counter()
    op = await store.reserve(**request_args(i))  # type: ignore[arg-type]
    return time.perf_counter() - start, op


async def bursts(
    stores: Sequence[ClusterStore], count: int, concurrency: int
) -> tuple[list[float], int]:
    times: list[float] = []
    misses = 0
    for b in range(-1, count):  # burst -1 prepares each connection's statements: not counted
        results = await asyncio.gather(
            *(
                timed_reserve(stores[i % len(stores)], b * concurrency + i)
                for i in range(concurrency)
            )
        )
        if b >= 0:
            times.extend(t for t, _ in results)
            misses += sum(op is None for _, op in results)
        await asyncio.gather(
            *(stores[0].finish(op.activation_id, 4, sells=False) for _, op in results if op)
        )
    return times, misses


async def sustained(
    stores: Sequence[ClusterStore], requests: int, concurrency: int
) -> tuple[list[float], list[float], int, float]:
    reserve_times: list[float] = []
    finish_times: list[float] = []
    misses = 0
    counter = iter(range(requests))

    async def client(w: int) -> None:
        nonlocal misses
        for i in counter:
            took, op = await timed_reserve(stores[(w + i) % len(stores)], i)
            reserve_times.append(took)
            if op is None:
                misses += 1
                continue
            start = time.perf_counter()
            await stores[(w + i) % len(stores)].finish(op.activation_id, 4, sells=False)
            finish_times.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(concurrency)))
    return reserve_times, finish_times, misses, time.perf_counter() - began


async def bench(dsn: str, args: argparse.Namespace) -> None:
    stores = [ClusterStore(dsn, name, pool_max=args.pool) for name in BOXES]
    keepers: list[asyncio.Task[None]] = []
    for s in stores:
        await s.open()
    try:
        await stores[0].migrate()
        # Each box renews its lease, as muxd does (the run outlasts a lease).
        keepers.extend(asyncio.create_task(LeaseKeeper(s).run()) for s in stores)
        for index, s in enumerate(stores):
            await s.heartbeat()
            await s.publish_numbers(numbers_of(index, args.ports))
        # Open every pool's connections before timing anything.
        await asyncio.gather(*(s.live_numbers() for s in stores for _ in range(args.pool)))
        print(
            f"{len(BOXES)} boxes x {args.ports} ports, {args.pool} connections per box,"
            f" exceptionPhoneSet {list(MASKS)}"
        )
        rounds = (
            ("spread over 3 boxes", stores),
            ("through box1, its SIMs off-line", [stores[0]]),
        )
        for title, via in rounds:
            if len(via) == 1:
                await stores[0].publish_numbers([])
            times, misses = await bursts(via, args.bursts, args.concurrency)
            print(
                f"burst of {args.concurrency} GET_NUMBER at once x {args.bursts}, {title}:"
                f" {misses} answered no-number"
            )
            print(f"  reserve  {percentiles(times)}")
            reserves, finishes, misses, took = await sustained(via, args.requests, args.concurrency)
            print(
                f"sustained, {args.concurrency} clients back to back, {title}:"
                f" {args.requests / took:.0f} GET_NUMBER+FINISH/s, {misses} answered no-number"
            )
            print(f"  reserve  {percentiles(reserves)}")
            print(f"  finish   {percentiles(finishes)}")
    finally:
        for task in keepers:
            task.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        for s in stores:
            await s.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=30)
    parser.add_argument("--requests", type=int, default=5000, help="sustained round's total")
    parser.add_argument("--ports", type=int, default=256, help="ports (numbers) per box")
    parser.add_argument("--pool", type=int, default=POOL_MAX, help="connections per box")
    parser.add_argument("--dsn", default=None, help="an existing PostgreSQL (default: throwaway)")
    args = parser.parse_args(argv)
    if args.dsn:
        asyncio.run(bench(args.dsn, args))
        return 0
    with ThrowawayPostgres() as pg:
        print(f"throwaway PostgreSQL on 127.0.0.1:{pg.port} ({pg.data})")
        asyncio.run(bench(pg.dsn, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
