"""/api/outbox at a million parts, and what polling it costs the receive path.

    python -m benchmarks.outbox_read [--parts 1000000] [--ports 64] [--calls 200] [--phase 8]
                                     [--poll-rate 50]

1. Builds a journal of ``--parts`` parts (and a message per assembled part) in one transaction
   through the schema's triggers, as years of traffic would leave it.
2. The choice: counting rows per state (GROUP BY over the state indexes, even on a connection
   of its own) against reading the per-state counts the triggers keep.
3. /api/outbox through the real aiohttp app on a real socket, ``--calls`` sequential requests
   from a client in another process, cache off (every request reads the journal) and on
   (STATUS_CACHE_TTL).
4. Intake: ``--ports`` tasks store parts back to back for ``--phase`` seconds each (each port
   awaits its own put, as the receive path does): alone; alone without the count triggers;
   while the client polls, ``--poll-rate`` times a second, /healthz (the requests' own
   cost), /api/outbox with the cache off, then on, and the old stats (the same GROUP BY run
   inside the writer's group commit); alone again. Reports parts/s and put
   latency p50/p99, and the /api/outbox latency seen meanwhile.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd.pdu import encode_deliver
from muxd.ports import PortInfo
from muxd.store import Journal, PartIn
from muxd.store.journal import JOURNAL_FILE
from muxd.store.reads import read_only_uri
from muxd.store.schema import STATE_COUNT_RECOUNT, STATE_COUNT_TRIGGERS
from muxd.web import STATUS_CACHE_TTL, make_app

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
POOL = 4000  # distinct PDUs per port; a port's SIM name changes each time it has sent them all
GROUP_BY = (
    "SELECT state, count(*) FROM messages GROUP BY state",
    "SELECT state, count(*) FROM parts GROUP BY state",
)


def _part_rows(n: int) -> Iterator[tuple[Any, ...]]:
    """Parts as a large journal holds them: most assembled (one message each), some waiting,
    status reports, parked."""
    for i in range(n):
        r = i % 100
        state = (
            "assembled"
            if r < 90
            else "waiting"
            if r < 95
            else "status_report"
            if r < 98
            else "parked"
        )
        yield (
            f"{i:064x}",
            f"sim{i % 512}",
            f"port{i % 512:03d}",
            "+7900" + f"{i % 512:07d}",
            "SM",
            i % 50,
            "0791" + "00" * 30,
            40,
            1.7e9 + i,
            state,
            i + 1 if state == "assembled" else None,
        )


def _message_rows(n_parts: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n_parts):
        r = i % 100
        if r >= 90:
            continue
        state = "delivered" if r < 85 else "pending" if r < 87 else "parked" if r < 89 else "held"
        yield (i + 1, f"sim{i % 512}", f"port{i % 512:03d}", "+7900", "Bank", "code", 1, 1.7e9 + i,
               state, 1.7e9 + i if state == "delivered" else None)  # fmt: skip


async def build(state: Path, n_parts: int) -> dict[str, float]:
    journal = await Journal.open(state)  # the schema, the triggers
    await journal.close()
    started = time.perf_counter()
    conn = sqlite3.connect(state / JOURNAL_FILE, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO parts(fingerprint, sim, port, number, storage, idx, pdu, tpdu_length,"
            " received_at, state, message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            _part_rows(n_parts),
        )
        conn.executemany(
            "INSERT INTO messages(id, sim, port, number, sender, text, sms_time, received_at,"
            " state, delivered_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            _message_rows(n_parts),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {"parts": n_parts, "build_s": round(time.perf_counter() - started, 1)}


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def compare_reads(state: Path, runs: int = 5) -> dict[str, Any]:
    """GROUP BY (the state indexes exist) against the triggers' counts, on a read connection."""
    conn = sqlite3.connect(read_only_uri(state / JOURNAL_FILE), uri=True, isolation_level=None)
    try:
        timings: dict[str, list[float]] = {"group_by": [], "state_counts": []}
        for _ in range(runs):
            started = time.perf_counter()
            for query in GROUP_BY:
                conn.execute(query).fetchall()
            timings["group_by"].append(time.perf_counter() - started)
            started = time.perf_counter()
            conn.execute("SELECT tbl, state, n FROM state_counts WHERE n != 0").fetchall()
            timings["state_counts"].append(time.perf_counter() - started)
        plan = conn.execute(f"EXPLAIN QUERY PLAN {GROUP_BY[1]}").fetchall()
    finally:
        conn.close()
    return {k: ms(v) for k, v in timings.items()} | {"group_by_plan": str(plan[-1][-1])}


class BenchSource:
    """The daemon's outbox answer (stats and backlog); ``old`` runs the stats as they were,
    in the writer's group commit."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.old = False

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        return None

    def ports(self) -> list[PortInfo]:
        return []

    def numbers(self) -> list[dict[str, Any]]:
        return []

    async def outbox(self) -> dict[str, Any]:
        if self.old:
            stats: dict[str, Any] = await self.journal.execute(_old_stats)
        else:
            stats = await self.journal.stats()
        return stats | {"backlog": self.journal.backlog}

    def totals(self) -> dict[str, Any]:
        return {"backlog": self.journal.backlog}

    def problem(self) -> str | None:
        return None

    def ready(self) -> str | None:
        return None


def _old_stats(conn: sqlite3.Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for prefix, query in zip(("messages", "parts"), GROUP_BY, strict=True):
        for state, n in conn.execute(query):
            out[f"{prefix}_{state}"] = n
    return out


def client(url: str, calls: int, seconds: float, rate: float) -> list[float]:
    """In a process of its own (the daemon's loop serves, it does not also poll): sequential
    GETs, ``calls`` of them or for ``seconds``, at most ``rate`` per second (0: back to back).
    Returns each request's latency."""
    return asyncio.run(_client(url, calls, seconds, rate))


async def _client(url: str, calls: int, seconds: float, rate: float) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while len(latencies) < calls if calls else time.perf_counter() - start < seconds:
            if rate and (wait := start + len(latencies) / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)  # the poll schedule, not a synchronisation
            started = time.perf_counter()
            async with http.get(url) as resp:
                await resp.read()
                assert resp.status == 200
            latencies.append(time.perf_counter() - started)
    return latencies


class Intake:
    def __init__(self, journal: Journal, ports: int) -> None:
        self.journal = journal
        self.ports = ports
        self.pool = [encode_deliver("Bank", f"code {i:06d}", scts=SCTS)[0] for i in range(POOL)]
        self.sent = [0] * ports

    async def run(self, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        until = time.perf_counter() + seconds

        async def port(p: int) -> None:
            while time.perf_counter() < until:
                k = self.sent[p]
                self.sent[p] += 1
                enc = self.pool[k % POOL]
                read = PartIn(f"bench{p}-{k // POOL}", f"port{p:03d}", "+79001234567", "SM",
                              k % 50, enc.hex, enc.tpdu_length, time.time())  # fmt: skip
                started = time.perf_counter()
                await self.journal.put_part(read)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(port(p) for p in range(self.ports)))
        elapsed = time.perf_counter() - started
        return {"parts_per_s": round(len(latencies) / elapsed)} | {
            f"put_{k}": v for k, v in ms(latencies).items() if k != "n"
        }


@contextlib.asynccontextmanager
async def serve(source: BenchSource, ttl: float) -> Any:
    runner = web.AppRunner(make_app(CollectorRegistry(), source, cache_ttl=ttl), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/outbox"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def triggers_dropped(state: Path) -> Iterator[None]:
    """The count triggers away for a while; then back, and everything counted afresh."""
    conn = sqlite3.connect(state / JOURNAL_FILE, isolation_level=None)
    try:
        for statement in STATE_COUNT_TRIGGERS:
            conn.execute(f"DROP TRIGGER {statement.split()[5]}")
        yield
        conn.execute("BEGIN IMMEDIATE")
        for statement in (*STATE_COUNT_TRIGGERS, *STATE_COUNT_RECOUNT):
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def polled(
    pool: ProcessPoolExecutor, url: str, *, calls: int = 0, seconds: float = 0.0, rate: float = 0.0
) -> list[float]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, client, url, calls, seconds, rate)


async def main_async(args: argparse.Namespace, pool: ProcessPoolExecutor) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="muxd-outbox-") as tmp:
        state = Path(tmp)
        report: dict[str, Any] = {"journal": await build(state, args.parts)}
        report["read_choice"] = compare_reads(state)
        journal = await Journal.open(state)
        source = BenchSource(journal)
        try:
            idle: dict[str, Any] = {}
            for label, ttl in (("cache_off", 0.0), ("cache_on", STATUS_CACHE_TTL)):
                async with serve(source, ttl) as url:
                    await polled(pool, url, calls=5)  # warm
                    idle[label] = ms(await polled(pool, url, calls=args.calls))
            report["outbox_idle"] = idle
            intake = Intake(journal, args.ports)
            await intake.run(1.0)  # warm
            under: dict[str, Any] = {"no_polling": await intake.run(args.phase)}
            with triggers_dropped(state):  # what keeping the counts costs the receive path
                under["no_polling_no_count_triggers"] = await intake.run(args.phase)
            # /healthz reads nothing: the cost of the requests alone (the client's CPU on this
            # machine, the daemon's HTTP handling), against which the reads are measured.
            phases = (("healthz", 0.0, False, "/healthz"),
                      ("cache_off", 0.0, False, "/api/outbox"),
                      ("cache_on", STATUS_CACHE_TTL, False, "/api/outbox"),
                      ("old_stats_in_writer", 0.0, True, "/api/outbox"))  # fmt: skip
            for label, ttl, old, path in phases:
                source.old = old
                async with serve(source, ttl) as url:
                    figures, latencies = await asyncio.gather(
                        intake.run(args.phase),
                        polled(pool, url.replace("/api/outbox", path), seconds=args.phase,
                               rate=args.poll_rate),
                    )  # fmt: skip
                under[f"polling_{label}"] = figures | {"latency": ms(latencies)}
            source.old = False
            under["no_polling_again"] = await intake.run(args.phase)  # the drift of the run
            report["intake"] = {
                "ports": args.ports,
                "phase_s": args.phase,
                "poll_rate_per_s": args.poll_rate,
            } | under
            report["stats_after"] = stats = await journal.stats()
            counted = sqlite3.connect(read_only_uri(state / JOURNAL_FILE), uri=True)
            try:
                report["stats_exact"] = stats == _old_stats(counted)
            finally:
                counted.close()
        finally:
            await journal.close()
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--parts", type=int, default=1_000_000)
    parser.add_argument("--ports", type=int, default=64)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--phase", type=float, default=8.0, help="seconds per intake phase")
    parser.add_argument(
        "--poll-rate", type=float, default=50.0, help="/api/outbox requests per second during"
        " intake (50: a hundred status tabs at one poll per 2 s each)"
    )  # fmt: skip
    args = parser.parse_args()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = asyncio.run(main_async(args, pool))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
