"""A burst of GET_NUMBERs from a process of its own (no simulated modems beside it), each
answered operation finished again: ``python -m benchmarks.cluster_burst URL KEY MASK N
[URL MASK ...]``. Prints the p50 and p99 latency of each of three rounds. With more than one
URL (each with the mask its request carries), the requests of a round go to them in turn, as
a load balancer in front of the boxes would spread them.

The client stands for Onlinesim, which runs on other machines: here it shares the boxes' two
cores, so it costs as little as it can. By default it is :mod:`benchmarks.http_load`
(keep-alive connections opened, and answered once, before the first round; each request
written in one call: about 30 us of CPU per request); ``--aiohttp`` as the first argument uses
an aiohttp client instead (about 0.3 ms per request, opening its connections in the first
round), for comparison."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson
import uvloop

from benchmarks.http_load import Answer, Connection

ROUNDS = 3


def request_body(key: str, mask: int) -> dict[str, object]:
    body = {"action": "GET_NUMBER", "country": "russia", "service": "vk", "sum": 10}
    return {**body, "exceptionPhoneSet": [mask], "key": key}


def report(r: int, n: int, results: list[tuple[float, dict[str, object]]]) -> None:
    lat = sorted(t for t, _ in results)
    ok = [a for _, a in results if a.get("status") == "SUCCESS"]
    p50, p99 = lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(f"round {r}: {n} at once: {len(ok)} reserved, p50 {p50:.1f} ms, p99 {p99:.1f} ms")


async def lean(targets: list[tuple[str, int]], key: str, n: int) -> None:
    """Rounds of ``n`` requests, one per connection, all opened before the first round and
    answered once (a TCP connect returns before the server accepted the connection: without
    this, the first round would measure the box setting up 100 connections)."""
    conns = [Connection(targets[i % len(targets)][0]) for i in range(n)]
    await asyncio.gather(*(c.open() for c in conns))
    # An unknown action: answered 400 by the box's HTTP layer, nothing reserved or read.
    hello = [c.request_bytes(orjson.dumps({"action": "HELLO", "key": key})) for c in conns]
    for answer in await asyncio.gather(*(c.send(h) for c, h in zip(conns, hello, strict=True))):
        if answer.status != 400:
            raise RuntimeError(f"warm-up: HTTP {answer.status}: {answer.body[:200]!r}")
    requests = [
        c.request_bytes(orjson.dumps(request_body(key, targets[i % len(targets)][1])))
        for i, c in enumerate(conns)
    ]

    async def timed(conn: Connection, request: bytes) -> tuple[float, dict[str, object]]:
        t = time.perf_counter()
        answer: Answer = await conn.send(request)
        elapsed = time.perf_counter() - t
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {answer.body[:200]!r}")
        return elapsed, answer.json()

    try:
        for r in range(ROUNDS):
            pairs = zip(conns, requests, strict=True)
            results = await asyncio.gather(*(timed(c, q) for c, q in pairs))
            report(r, n, results)
            for _, a in results:
                if a.get("status") == "SUCCESS":
                    finish = {"action": "FINISH_ACTIVATION", "activationId": a["activationId"]}
                    await conns[0].post_json({**finish, "status": 4, "key": key})
    finally:
        for c in conns:
            c.close()


async def main(targets: list[tuple[str, int]], key: str, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def post(url: str, body: dict[str, object]) -> tuple[float, dict[str, object]]:
            t = time.perf_counter()
            async with http.post(url, json={"key": key, **body}) as resp:
                answer = await resp.json()
            return time.perf_counter() - t, answer

        def get(i: int) -> tuple[str, dict[str, object]]:
            url, mask = targets[i % len(targets)]
            return url, request_body(key, mask)

        for r in range(ROUNDS):
            results = await asyncio.gather(*(post(*get(i)) for i in range(n)))
            report(r, n, results)
            for a in (a for _, a in results if a.get("status") == "SUCCESS"):
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
    run = main if args[:1] == ["--aiohttp"] else lean
    args = args[1:] if run is main else args
    key = args.pop(1)
    uvloop.run(run(targets_of(args), key, int(args[2])))
