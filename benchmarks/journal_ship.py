"""Journal and shipper throughput.

    python -m benchmarks.journal_ship [--parts 20000] [--ports 256] [--batch-max 100]

1. Journal: ``--ports`` tasks put ``--parts`` single-part SMS concurrently (each port awaits its
   own put before the next, as the receive path does). Reports SMS/s, group commits (fsyncs),
   CPU-µs per SMS of this process.
2. Shipper: drains the journaled SMS to the Onlinesim stand-in running in a separate process
   (``muxd stand-in``), so only muxd's side is in the CPU figure. Reports SMS/s and CPU-µs per SMS.
3. Both at once (``--rate R``, for ``--seconds``): the ports put SMS at ``R`` per second in all
   while the shipper runs as the daemon runs it (adaptive batches). Reports what was shipped per
   second and the latency from put to the upstream's acknowledgement: whether shipping keeps
   up with intake, with both on one journal (the journal's writer busy with group commits).

    python -m benchmarks.journal_ship --parts 0 --ports 512 --rate 3000 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn, PendingMessage
from muxd.upstream.shipper import Shipper
from muxd.upstream.v2 import NumberEntry, V2Client

KEY = "bench-key"
STAND_IN_START_TIMEOUT = 15.0
DRAIN_POLL = 0.05  # how often the backlog is looked at while the shipper drains what is left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + STAND_IN_START_TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def bench_journal(
    state: Path, n_parts: int, n_ports: int
) -> tuple[Journal, dict[str, float]]:
    commits: list[int] = []
    journal = await Journal.open(state, on_commit=lambda _s, n: commits.append(n))
    scts = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    numbers = [f"+7900{i:07d}" for i in range(n_ports)]
    per_port = n_parts // n_ports
    # Encode up front: the simulator's work is not the journal's.
    pdus = [
        [
            encode_deliver("Bank", f"Your code is {p:03d}{k:06d}", scts=scts)[0]
            for k in range(per_port)
        ]
        for p in range(n_ports)
    ]

    async def port(p: int) -> None:
        for k, enc in enumerate(pdus[p]):
            await journal.put_part(
                PartIn(
                    sim=f"sim{p}",
                    port=f"port{p:03d}",
                    number=numbers[p],
                    storage="SM",
                    index=k,
                    pdu=enc.hex,
                    tpdu_length=enc.tpdu_length,
                    received_at=time.time(),
                )
            )

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(port(p) for p in range(n_ports)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    total = per_port * n_ports
    return journal, {
        "sms": total,
        "sms_per_s": total / wall,
        "commits": len(commits),
        "commits_per_s": len(commits) / wall,
        "cpu_us_per_sms": cpu / total * 1e6,
    }


async def bench_ship(journal: Journal, n_ports: int, batch_max: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [sys.executable, "-m", "muxd", "stand-in", "--listen", f"127.0.0.1:{port}",
         "--api-key", KEY, "--log-level", "warning"],
    )  # fmt: skip
    try:
        await wait_listening(port)
        async with aiohttp.ClientSession() as http:
            client = V2Client(http, f"http://127.0.0.1:{port}", KEY)
            await client.send_numbers_online(
                [NumberEntry(number=f"+7900{i:07d}", country_id=7) for i in range(n_ports)]
            )
            shipper = Shipper(journal, client, batch_max=batch_max, batch_delay=0.0)
            backlog = journal.backlog
            cpu0, t0 = time.process_time(), time.perf_counter()
            await shipper.drain()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            assert journal.backlog == 0, journal.backlog
    finally:
        proc.terminate()
        proc.wait()
    return {
        "sms": backlog,
        "sms_per_s": backlog / wall,
        "batch_max": batch_max,
        "cpu_us_per_sms": cpu / backlog * 1e6,
    }


async def bench_both(
    state: Path, n_ports: int, batch_max: int, rate: float, seconds: float
) -> dict[str, float]:
    journal = await Journal.open(state)
    scts = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    numbers = [f"+7901{i:07d}" for i in range(n_ports)]
    enc = encode_deliver("Bank", "Your code is 123456", scts=scts)[0]
    latencies: list[float] = []

    def delivered(batch: list[PendingMessage], now: float) -> None:
        latencies.extend(time.time() - m.received_at for m in batch)

    port_no = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [sys.executable, "-m", "muxd", "stand-in", "--listen", f"127.0.0.1:{port_no}",
         "--api-key", KEY, "--log-level", "warning"],
    )  # fmt: skip
    interval = n_ports / rate  # each port puts one SMS per interval
    put = 0

    async def port(p: int) -> None:
        nonlocal put
        start = time.monotonic() + interval * p / n_ports
        k = 0
        while (due := start + k * interval) < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await journal.put_part(
                PartIn(
                    sim=f"sim{p}", port=f"port{p:03d}", number=numbers[p], storage="SM",
                    index=k, pdu=enc.hex, tpdu_length=enc.tpdu_length, received_at=time.time(),
                )
            )  # fmt: skip
            put += 1
            k += 1

    try:
        await wait_listening(port_no)
        async with aiohttp.ClientSession() as http:
            client = V2Client(http, f"http://127.0.0.1:{port_no}", KEY)
            await client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in numbers])
            shipper = Shipper(journal, client, batch_max=batch_max, on_delivered=delivered)
            shipping = asyncio.create_task(shipper.run())
            t0 = time.monotonic()
            end = t0 + seconds
            await asyncio.gather(*(port(p) for p in range(n_ports)))
            backlog_at_end = journal.backlog
            while journal.backlog:
                journal.new_messages.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_POLL):
                        await journal.new_messages.wait()
            drained = time.monotonic() - end
            shipping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shipping
    finally:
        proc.terminate()
        proc.wait()
        await journal.close()
    latencies.sort()
    return {
        "rate": rate,
        "put_per_s": put / seconds,
        "backlog_at_end": backlog_at_end,
        "drain_after_s": drained,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", type=int, default=20000)
    parser.add_argument("--ports", type=int, default=256)
    parser.add_argument("--batch-max", type=int, default=100)
    parser.add_argument("--dir", default=None, help="journal directory (default: a temp dir)")
    parser.add_argument("--rate", type=float, default=0.0, help="3: SMS/s put while shipping")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.rate:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            b = await bench_both(Path(tmp), args.ports, args.batch_max, args.rate, args.seconds)
        print(
            f"both     {b['put_per_s']:>7.0f} SMS/s put for {args.seconds:.0f} s; backlog at"
            f" the end {b['backlog_at_end']:.0f}, shipped {b['drain_after_s']:.2f} s later;"
            f" put -> acknowledged p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms"
        )
        print(orjson.dumps({"both": b}).decode())
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        journal, j = await bench_journal(Path(tmp), args.parts, args.ports)
        try:
            s = await bench_ship(journal, args.ports, args.batch_max)
        finally:
            await journal.close()
    print(f"disk: {Path(args.dir or tempfile.gettempdir()).resolve()}")  # noqa: ASYNC240
    print(
        f"journal  {j['sms']:>7.0f} SMS  {j['sms_per_s']:>8.0f} SMS/s  "
        f"{j['commits']:.0f} commits ({j['commits_per_s']:.0f}/s, fsync each)  "
        f"{j['cpu_us_per_sms']:.1f} CPU-µs/SMS"
    )
    print(
        f"shipper  {s['sms']:>7.0f} SMS  {s['sms_per_s']:>8.0f} SMS/s"
        f"  batch_max {s['batch_max']:.0f}"
        f"  {s['cpu_us_per_sms']:.1f} CPU-µs/SMS (muxd side; stand-in in its own process)"
    )
    print(orjson.dumps({"journal": j, "shipper": s}).decode())


if __name__ == "__main__":
    asyncio.run(main())
