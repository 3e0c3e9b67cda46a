"""CPU of one addMessages request, as the shipper sends one SMS at low load: muxd's V2Client
over aiohttp and over its own HTTP/1.1 client (:mod:`muxd.upstream.http_client`, what the
daemon uses), against a bare keep-alive HTTP/1.1 exchange (:mod:`benchmarks.http_load`) with
the same body, all against the Onlinesim stand-in in a process of its own.

``python -m benchmarks.v2_request_cost [N]`` (default 1500). Requests go one at a time, 2 ms
apart (an idle loop between them, as at 50 SMS/s); the figure is this process's CPU time per
request less that of the same loop with no request (the wake-ups alone).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop

from benchmarks.e2e_core import free_port
from benchmarks.http_load import Connection
from muxd.upstream.http_client import HttpClient
from muxd.upstream.v2 import MessageItem, NumberEntry, V2Client

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
NUMBER = "+79001234567"
GAP = 0.002
WARM = 50
STAND_IN_START = 30.0


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(STAND_IN_START):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def per_request(n: int, call: object) -> float:
    """Microseconds of CPU per ``await call()``, each followed by a GAP of idling."""
    assert callable(call)
    started = time.process_time()
    for _ in range(n):
        await call()
        await asyncio.sleep(GAP)
    return (time.process_time() - started) / n * 1e6


def start_stand_in(port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "muxd", "stand-in", "--listen", f"127.0.0.1:{port}"]
    return subprocess.Popen([*argv, "--api-key", KEY, "--log-level", "warning"], cwd=ROOT)


async def main(n: int, port: int, stand_in: subprocess.Popen[bytes]) -> None:
    try:
        await wait_listening(port)
        url = f"http://127.0.0.1:{port}"
        item = MessageItem(date=str(int(time.time())), number=NUMBER, sender="Bank", message="1")
        async with aiohttp.ClientSession() as http:
            client = V2Client(http, url, KEY)
            await client.send_numbers_online([NumberEntry(number=NUMBER, country_id=7)])

            async def v2client() -> None:
                await client.add_messages([item])

            for _ in range(WARM):
                await v2client()
            aiohttp_us = await per_request(n, v2client)
        async with HttpClient() as lean_http:
            client = V2Client(lean_http, url, KEY)

            async def v2lean() -> None:
                await client.add_messages([item])

            for _ in range(WARM):
                await v2lean()
            v2lean_us = await per_request(n, v2lean)
        conn = Connection(f"{url}/api/resellers/addMessages")
        await conn.open()
        body = orjson.dumps({"messages": [{"date": item.date, "number": NUMBER, "from": "Bank",
                                           "message": item.message}]})  # fmt: skip
        request = conn.request_bytes(body).replace(
            b"\r\n\r\n", f"\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode(), 1
        )

        async def lean() -> None:
            answer = await conn.send(request)
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {answer.body[:200]!r}")

        for _ in range(WARM):
            await lean()
        lean_us = await per_request(n, lean)
        conn.close()

        async def nothing() -> None:
            pass

        idle_us = await per_request(n, nothing)
    finally:
        stand_in.terminate()
    print(f"{n} requests, {GAP * 1000:.0f} ms apart; CPU per request, net of the idle loop:")
    print(f"  V2Client over aiohttp:    {aiohttp_us - idle_us:6.0f} us")
    print(f"  V2Client over HttpClient: {v2lean_us - idle_us:6.0f} us   (the daemon's)")
    print(f"  bare HTTP/1.1 exchange:   {lean_us - idle_us:6.0f} us")
    print(f"  (the idle loop alone: {idle_us:.0f} us per round)")


if __name__ == "__main__":
    stand_in_port = free_port()
    proc = start_stand_in(stand_in_port)
    try:
        uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500, stand_in_port, proc))
    finally:
        proc.wait()
