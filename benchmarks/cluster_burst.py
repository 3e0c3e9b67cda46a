"""A burst of GET_NUMBERs from a process of its own (no simulated modems beside it), each
answered operation finished again: ``python -m benchmarks.cluster_burst URL KEY MASK N``.
Prints the p50 and p99 latency of each of three rounds. The client stands for Onlinesim: it
runs on uvloop, as the boxes do, so its own CPU per request weighs less on the shared cores."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import uvloop

ROUNDS = 3


async def main(url: str, key: str, mask: int, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def post(body: dict[str, object]) -> tuple[float, dict[str, object]]:
            t = time.perf_counter()
            async with http.post(url, json={**body, "key": key}) as resp:
                answer = await resp.json()
            return time.perf_counter() - t, answer

        for r in range(ROUNDS):
            get = {"action": "GET_NUMBER", "country": "russia", "service": "vk", "sum": 10}
            get["exceptionPhoneSet"] = [mask]
            results = await asyncio.gather(*(post(get) for _ in range(n)))
            lat = sorted(t for t, _ in results)
            ok = [a for _, a in results if a.get("status") == "SUCCESS"]
            p50, p99 = (
                lat[len(lat) // 2] * 1000,
                lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            )
            print(f"round {r}: {n} at once: {len(ok)} reserved, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            for a in ok:
                await post(
                    {"action": "FINISH_ACTIVATION", "activationId": a["activationId"], "status": 4}
                )


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
