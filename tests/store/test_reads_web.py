"""The status API's short cache: many tabs cost one journal read per second, through the real
aiohttp app on a real socket, with an injected monotonic clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd.pdu import encode_deliver
from muxd.ports import PortInfo
from muxd.store import Journal, PartIn
from muxd.web import STATUS_CACHE_TTL, CachedAnswer, make_app

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
TABS = 20


@dataclass
class JournalSource:
    """A StatusSource whose outbox is the journal's stats, counting the reads it makes."""

    journal: Journal
    outbox_calls: int = 0
    totals_calls: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        return None

    def ports(self) -> list[PortInfo]:
        return []

    def numbers(self) -> list[dict[str, Any]]:
        return []

    async def outbox(self) -> dict[str, Any]:
        self.outbox_calls += 1
        self.entered.set()
        await self.gate.wait()
        stats: dict[str, Any] = await self.journal.stats()
        return stats | {"backlog": self.journal.backlog}

    def totals(self) -> dict[str, Any]:
        self.totals_calls += 1
        return {"backlog": self.journal.backlog}

    def problem(self) -> str | None:
        return None

    def ready(self) -> str | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    url: str
    source: JournalSource
    clock: Clock
    http: aiohttp.ClientSession

    async def get(self, path: str) -> dict[str, Any]:
        async with self.http.get(self.url + path) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            body: dict[str, Any] = await resp.json()
            return body


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, ttl: float = STATUS_CACHE_TTL) -> AsyncIterator[Served]:
    journal = await Journal.open(tmp_path)
    source = JournalSource(journal)
    clock = Clock()
    runner = web.AppRunner(
        make_app(CollectorRegistry(), source, cache_ttl=ttl, clock=clock), access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession() as http:
            yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", source, clock, http)
    finally:
        await runner.cleanup()
        await journal.close()


async def store_one(journal: Journal, index: int) -> None:
    (enc,) = encode_deliver("Bank", f"code {index}", scts=SCTS)
    read = PartIn("8970101", "port000", "+79001234567", "SM", index, enc.hex, enc.tpdu_length, 0.0)
    await journal.put_part(read)


async def test_many_tabs_cost_one_read_per_ttl(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        source = served.source
        await store_one(source.journal, 1)
        # Every tab asks while the first read is still running: they share it.
        polls = [asyncio.create_task(served.get("/api/outbox")) for _ in range(TABS)]
        await source.entered.wait()  # the first request reached the source
        source.gate.set()
        answers = await asyncio.gather(*polls)
        assert source.outbox_calls == 1
        assert all(
            a == {"messages_pending": 1, "parts_assembled": 1, "backlog": 1} for a in answers
        )
        # Within the TTL: the same answer, no read, even after a new SMS.
        await store_one(source.journal, 2)
        served.clock.now += STATUS_CACHE_TTL * 0.9
        assert (await served.get("/api/outbox"))["messages_pending"] == 1
        assert source.outbox_calls == 1
        # Past it: one fresh read.
        served.clock.now += STATUS_CACHE_TTL * 0.2
        assert (await served.get("/api/outbox"))["messages_pending"] == 2
        assert source.outbox_calls == 2
        # /api/totals has its own entry under the same rule.
        for _ in range(TABS):
            assert await served.get("/api/totals") == {"backlog": 2}
        assert source.totals_calls == 1


async def test_ttl_zero_reads_every_time(tmp_path: Path) -> None:
    async with serving(tmp_path, ttl=0.0) as served:
        served.source.gate.set()
        for index in range(3):
            await store_one(served.source.journal, index)
            assert (await served.get("/api/outbox"))["messages_pending"] == index + 1
        assert served.source.outbox_calls == 3


async def test_a_clock_going_back_does_not_pin_an_answer() -> None:
    clock = Clock()
    made = 0

    async def make() -> dict[str, int]:
        nonlocal made
        made += 1
        return {"n": made}

    answer = CachedAnswer(make, ttl=1.0, clock=clock)
    assert await answer.body() == b'{"n":1}'
    clock.now -= 3600.0  # a fake or broken clock stepping back
    assert await answer.body() == b'{"n":2}'


async def test_a_failure_is_not_kept_and_a_gone_caller_does_not_cancel() -> None:
    clock = Clock()
    gate = asyncio.Event()
    entered = asyncio.Event()
    outcomes: list[object] = [RuntimeError("journal failed"), {"n": 1}]

    async def make() -> object:
        entered.set()
        await gate.wait()
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    answer = CachedAnswer(make, ttl=1.0, clock=clock)
    first = asyncio.create_task(answer.body())
    await entered.wait()
    gate.set()
    with pytest.raises(RuntimeError, match="journal failed"):
        await first
    # The next request tries again (no floor needed: each is one operator's request).
    gate.clear()
    entered.clear()
    gone = asyncio.create_task(answer.body())
    await entered.wait()
    gone.cancel()  # the browser tab closed mid-read
    with pytest.raises(asyncio.CancelledError):
        await gone
    gate.set()
    assert await answer.body() == b'{"n":1}'  # the read went on, and is kept
    assert outcomes == []
