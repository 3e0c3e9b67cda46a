"""GET_NUMBER's reservation in the cluster's PostgreSQL: latency at 100 concurrent requests.

Three boxes of 256 ports each publish their numbers into a throwaway PostgreSQL (or the one
``--dsn`` names). Then ``--concurrency`` requests are kept in flight until ``--requests`` are
done: each reserves a number (timed: that is GET_NUMBER's part in the database) and then
finishes the operation (FINISH_ACTIVATION, status 4, timed apart), which frees the number.
Two rounds: requests spread over the three boxes (a load balancer in front), and all requests
through one box whose own SIMs were taken off-line, so every number it hands out is on another
box. Prints p50/p90/p99/max per round.

    python -m benchmarks.cluster_reserve [--requests 5000] [--concurrency 100] [--ports 256]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from muxd.cluster.records import NumberEntry
from muxd.cluster.store import ClusterStore
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


async def run_round(
    stores: Sequence[ClusterStore], requests: int, concurrency: int
) -> tuple[list[float], list[float], int, float]:
    reserve_times: list[float] = []
    finish_times: list[float] = []
    misses = 0
    counter = iter(range(requests))

    async def worker(w: int) -> None:
        nonlocal misses
        for i in counter:
            store = stores[(w + i) % len(stores)]
            country, _, operators = COUNTRIES[i % len(COUNTRIES)]
            operator = "any" if i % 3 else operators[i % len(operators)]
            start = time.perf_counter()
            op = await store.reserve(
                country=country,
                operator=operator,
                service=SERVICES[i % len(SERVICES)],
                masks=MASKS,
                sum=4.5,
            )
            reserve_times.append(time.perf_counter() - start)
            if op is None:
                misses += 1
                continue
            start = time.perf_counter()
            await store.finish(op.activation_id, 4, sells=False)
            finish_times.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return reserve_times, finish_times, misses, time.perf_counter() - began


async def bench(dsn: str, requests: int, concurrency: int, ports: int) -> None:
    stores = [ClusterStore(dsn, name) for name in BOXES]
    for s in stores:
        await s.open()
    try:
        await stores[0].migrate()
        for index, s in enumerate(stores):
            await s.heartbeat()
            await s.publish_numbers(numbers_of(index, ports))
        # Warm every pool's connections (not timed).
        await asyncio.gather(*(s.live_numbers() for s in stores for _ in range(10)))
        print(
            f"{len(BOXES)} boxes x {ports} ports, {concurrency} concurrent requests,"
            f" {requests} per round, exceptionPhoneSet {list(MASKS)}"
        )
        rounds = (
            ("spread over 3 boxes", stores),
            ("through box1, its SIMs off-line", [stores[0]]),
        )
        for title, via in rounds:
            if len(via) == 1:
                await stores[0].publish_numbers([])
            reserves, finishes, misses, took = await run_round(via, requests, concurrency)
            print(f"{title}: {requests / took:7.0f} GET_NUMBER/s, {misses} answered no-number")
            print(f"  reserve  {percentiles(reserves)}")
            print(f"  finish   {percentiles(finishes)}")
    finally:
        for s in stores:
            await s.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--ports", type=int, default=256, help="ports (numbers) per box")
    parser.add_argument("--dsn", default=None, help="an existing PostgreSQL (default: throwaway)")
    args = parser.parse_args(argv)
    if args.dsn:
        asyncio.run(bench(args.dsn, args.requests, args.concurrency, args.ports))
        return 0
    with ThrowawayPostgres() as pg:
        print(f"throwaway PostgreSQL on 127.0.0.1:{pg.port} ({pg.data})")
        asyncio.run(bench(pg.dsn, args.requests, args.concurrency, args.ports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
