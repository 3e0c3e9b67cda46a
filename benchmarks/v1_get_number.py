"""GET_NUMBER latency of muxd's v1 partner server (issue 6 target: p99 < 50 ms).

    python -m benchmarks.v1_get_number [--numbers 512] [--concurrency 100] [--requests 5000]
                                       [--closed-loop] [--same-process] [--no-uvloop]

A real V1Service (512 fake sellable ports across four Russian operators, a real journal on
disk with synchronous=FULL, the real server on loopback) runs in a child process, as the daemon
would; this process plays Onlinesim over pooled aiohttp connections: in rounds, ``--concurrency``
GET_NUMBERs at once (gzip bodies, a random service, an exceptionPhoneSet), then
FINISH_ACTIVATION status 4 for each number handed out, until ``--requests`` GET_NUMBERs were
measured. ``--closed-loop``: instead, ``--concurrency`` clients each alternate GET_NUMBER and
FINISH without pause (a harsher, overlapping load). Every GET_NUMBER commits one operation to
the journal before it is answered, every FINISH one more.

Reports GET_NUMBER latency p50/p99/max as the client saw it, FINISH latency, GET_NUMBER/s,
answers by status, and the server's CPU time per GET_NUMBER+FINISH pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import multiprocessing
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from muxd.config import V1Config
from muxd.numbering import calling_code
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal
from muxd.upstream.v1 import V1Service

KEY = "bench-key"
SERVICES = ["vk", "wa", "tg", "ok"]
OPERATORS = (25001, 25002, 25099, 25020)
WARMUP = 200  # GET_NUMBERs not measured (connections, caches)
SERVER_START_TIMEOUT = 30.0


def fake_ports(n: int) -> list[PortInfo]:
    out = []
    for i in range(n):
        number = f"+7900{1000000 + i:07d}"
        out.append(
            PortInfo(
                name=f"port{i:03d}",
                path=f"/dev/fake{i}",
                status=PortStatus.READY,
                number=number,
                operator=OPERATORS[i % len(OPERATORS)],
                country_id=calling_code(number),
                registered=True,
                iccid=f"89701{i:014d}",
            )
        )
    return out


async def serve(state: Path, n_numbers: int, ready: Queue[int]) -> None:
    ports = fake_ports(n_numbers)
    journal = await Journal.open(state)
    cfg = V1Config(
        listen="127.0.0.1:0",
        push_sms_url="http://127.0.0.1:9/v1/PUSH_SMS",  # no SMS in this benchmark
        services=SERVICES,
    )
    task: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            svc = V1Service(cfg, KEY, journal, lambda: ports, http)
            task = asyncio.create_task(svc.run())
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
            await svc.started.wait()
            ready.put(svc.port)
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await journal.close()


def server_main(state: str, n_numbers: int, ready: Queue[int], uvloop_on: bool) -> None:
    if uvloop_on:
        import uvloop

        uvloop.install()
    asyncio.run(serve(Path(state), n_numbers, ready))


def body(payload: dict[str, Any]) -> bytes:
    return gzip.compress(orjson.dumps({**payload, "key": KEY}))


HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Encoding": "gzip",
    "Accept-Encoding": "gzip",
    "User-Agent": "bench-onlinesim",
    "Authorization": f"Bearer {KEY}",
}


class Client:
    """Onlinesim's side: GET_NUMBER and FINISH_ACTIVATION over one pooled session."""

    def __init__(self, http: aiohttp.ClientSession, url: str, numbers: int) -> None:
        self.http = http
        self.url = url
        self.rng = random.Random(6)
        # 10-digit prefixes of real numbers: each excludes up to 10 of them
        self.masks = [int(p.number[1:11]) for p in fake_ports(numbers) if p.number]

    async def get_number(self) -> tuple[float, dict[str, Any]]:
        request = {
            "action": "GET_NUMBER",
            "country": "russia",
            "operator": "any",
            "service": self.rng.choice(SERVICES),
            "sum": 10,
            "exceptionPhoneSet": [self.rng.choice(self.masks)],
        }
        started = time.perf_counter()
        async with self.http.post(self.url, data=body(request), headers=HEADERS) as resp:
            answer: dict[str, Any] = orjson.loads(await resp.read())
        return time.perf_counter() - started, answer

    async def finish(self, activation_id: int) -> float:
        request = {"action": "FINISH_ACTIVATION", "activationId": activation_id, "status": 4}
        started = time.perf_counter()
        async with self.http.post(self.url, data=body(request), headers=HEADERS) as resp:
            answer = orjson.loads(await resp.read())
        assert answer["status"] == "SUCCESS", answer
        return time.perf_counter() - started


async def load(
    url: str, concurrency: int, total: int, numbers: int, *, closed_loop: bool = False
) -> dict[str, Any]:
    """Rounds (default): ``concurrency`` GET_NUMBERs at once, then FINISH 4 for each, until
    ``total`` were measured. Closed loop: ``concurrency`` clients each alternate GET_NUMBER
    and FINISH without pause (the two kinds overlap)."""
    get_lat: list[float] = []
    finish_lat: list[float] = []
    answers: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        client = Client(http, url, numbers)
        if closed_loop:
            issued = 0

            async def worker() -> None:
                nonlocal issued
                while issued < total + WARMUP:
                    issued += 1
                    measured = issued > WARMUP
                    seconds, answer = await client.get_number()
                    if measured:
                        get_lat.append(seconds)
                        answers[answer["status"]] += 1
                    if answer["status"] == "SUCCESS":
                        spent = await client.finish(answer["activationId"])
                        if measured:
                            finish_lat.append(spent)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            done = 0
            while done < total + WARMUP:
                batch = await asyncio.gather(*(client.get_number() for _ in range(concurrency)))
                measured = done >= WARMUP
                done += concurrency
                ids = [a["activationId"] for _, a in batch if a["status"] == "SUCCESS"]
                spent = await asyncio.gather(*(client.finish(i) for i in ids))
                if measured:
                    get_lat.extend(s for s, _ in batch)
                    answers.update(a["status"] for _, a in batch)
                    finish_lat.extend(spent)
    return {"get": get_lat, "finish": finish_lat, "answers": answers}


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


async def run_same_process(state: Path, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    ports = fake_ports(args.numbers)
    journal = await Journal.open(state)
    cfg = V1Config(listen="127.0.0.1:0", push_sms_url="http://127.0.0.1:9/", services=SERVICES)
    try:
        async with aiohttp.ClientSession() as http:
            svc = V1Service(cfg, KEY, journal, lambda: ports, http)
            task = asyncio.create_task(svc.run())
            await svc.started.wait()
            started = time.perf_counter()
            result = await load(
                f"http://127.0.0.1:{svc.port}/",
                args.concurrency,
                args.requests,
                args.numbers,
                closed_loop=args.closed_loop,
            )
            elapsed = time.perf_counter() - started
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await journal.close()
    return result, elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numbers", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--same-process", action="store_true", help="server and clients share")
    parser.add_argument(
        "--closed-loop", action="store_true", help="clients alternate GET/FINISH without rounds"
    )
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    uvloop_on = not args.no_uvloop
    with tempfile.TemporaryDirectory(prefix="muxd-v1-bench-") as tmp:
        state = Path(tmp)
        cpu = None
        if args.same_process:
            if uvloop_on:
                import uvloop

                uvloop.install()
            result, elapsed = asyncio.run(run_same_process(state, args))
        else:
            ctx = multiprocessing.get_context("spawn")
            ready: Queue[int] = ctx.Queue()
            child = ctx.Process(
                target=server_main, args=(str(state), args.numbers, ready, uvloop_on)
            )
            child.start()
            try:
                port = ready.get(timeout=SERVER_START_TIMEOUT)
                if uvloop_on:
                    import uvloop

                    uvloop.install()
                started = time.perf_counter()
                result = asyncio.run(
                    load(
                        f"http://127.0.0.1:{port}/",
                        args.concurrency,
                        args.requests,
                        args.numbers,
                        closed_loop=args.closed_loop,
                    )
                )
                elapsed = time.perf_counter() - started
            finally:
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)
                child.join(10)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = usage.ru_utime + usage.ru_stime
    report(args, result, elapsed, cpu, state)


def report(
    args: argparse.Namespace, result: dict[str, Any], elapsed: float, cpu: float | None, state: Path
) -> None:
    get, fin = result["get"], result["finish"]
    answers = ", ".join(f"{k} {v}" for k, v in sorted(result["answers"].items()))
    mode = (
        f"closed loop: {args.concurrency} clients alternating GET_NUMBER and FINISH 4"
        if args.closed_loop
        else f"rounds of {args.concurrency} concurrent GET_NUMBER, then FINISH 4 for each"
    )
    where = "same process" if args.same_process else "child process"
    loop = "asyncio" if args.no_uvloop else "uvloop"
    pairs = len(get) + WARMUP
    lines = [
        f"v1 GET_NUMBER benchmark: {args.numbers} numbers; {mode}",
        f"  {len(get)} GET_NUMBER measured (+{WARMUP} warm-up); server in a {where}, {loop},"
        f" journal synchronous=FULL in {state}",
        f"  answers: {answers}",
        f"  GET_NUMBER latency: p50 {ms(quantile(get, 0.5))}  p99 {ms(quantile(get, 0.99))}"
        f"  max {ms(max(get))}",
        f"  FINISH latency:     p50 {ms(quantile(fin, 0.5))}  p99 {ms(quantile(fin, 0.99))}"
        f"  max {ms(max(fin))}",
        f"  throughput: {pairs / elapsed:.0f} GET_NUMBER/s"
        f" ({(len(get) + len(fin) + 2 * WARMUP) / elapsed:.0f} requests/s) over {elapsed:.1f} s",
    ]
    if cpu is not None:
        lines.append(f"  server CPU: {cpu:.2f} s, {cpu / pairs * 1e6:.0f} µs per GET_NUMBER+FINISH")
    p99 = quantile(get, 0.99)
    lines.append(f"  target GET_NUMBER p99 < 50 ms: {'met' if p99 < 0.050 else 'MISSED'}")
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
