"""A burst of GET_NUMBERs from a process of its own (no simulated modems beside it), each
answered operation finished again: ``python -m benchmarks.cluster_burst URL KEY MASK N
[URL MASK ...]``. Prints the p50 and p99 latency of each of three rounds. With more than one
URL (each with the mask its request carries), the requests of a round go to them in turn, as
a load balancer in front of the boxes would spread them. The client stands for Onlinesim: it
runs on uvloop, as the boxes do, so its own CPU per request weighs less on the shared cores."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import uvloop

ROUNDS = 3


async def main(targets: list[tuple[str, int]], key: str, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def post(url: str, body: dict[str, object]) -> tuple[float, dict[str, object]]:
            t = time.perf_counter()
            async with http.post(url, json={**body, "key": key}) as resp:
                answer = await resp.json()
            return time.perf_counter() - t, answer

        def get(i: int) -> tuple[str, dict[str, object]]:
            url, mask = targets[i % len(targets)]
            body = {"action": "GET_NUMBER", "country": "russia", "service": "vk", "sum": 10}
            return url, {**body, "exceptionPhoneSet": [mask]}

        for r in range(ROUNDS):
            results = await asyncio.gather(*(post(*get(i)) for i in range(n)))
            lat = sorted(t for t, _ in results)
            ok = [a for _, a in results if a.get("status") == "SUCCESS"]
            p50, p99 = (
                lat[len(lat) // 2] * 1000,
                lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            )
            print(f"round {r}: {n} at once: {len(ok)} reserved, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            for a in ok:
                await post(
                    targets[0][0],
                    {"action": "FINISH_ACTIVATION", "activationId": a["activationId"], "status": 4},
                )


def targets_of(argv: list[str]) -> list[tuple[str, int]]:
    """URL MASK N [URL MASK ...] -> [(URL, MASK), ...] (N taken out by the caller)."""
    pairs = [(argv[0], int(argv[1]))]
    rest = argv[3:]
    pairs += [(rest[i], int(rest[i + 1])) for i in range(0, len(rest) - 1, 2)]
    return pairs


if __name__ == "__main__":
    args = sys.argv[1:]
    key = args.pop(1)
    uvloop.run(main(targets_of(args), key, int(args[2])))
