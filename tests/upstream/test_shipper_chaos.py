"""A seeded campaign of upstream faults against the shipper: every SMS arrives, in order.

The real stand-in answers 503s (down, random, injected), 429s (a rate limit on the injected
clock), drops connections before or after taking the request, answers slowly, or so slowly
that the client times out; SMS keep arriving meanwhile. Afterwards every SMS has reached the
upstream, in arrival order per number, and the journal holds nothing pending.

Duplicates: v2 has no idempotency key, so a request the upstream took whose answer was lost
(a connection dropped after processing, a client timeout while the server went on) is sent
again: that SMS arrives twice. The campaign counts those faults and checks that the
duplicates never exceed them, and that every duplicated SMS was recorded as attempted more
than once. Every other fault leaves no duplicate at all.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.store import Journal
from muxd.store.journal import JOURNAL_FILE
from muxd.upstream.shipper import Shipper
from muxd.upstream.v2 import NumberEntry, V2Client
from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim import Onlinesim, serve
from tests.upstream.conftest import KEY, NUMBERS, Carrier, Upstream

ROUNDS = 120
# The client gives up after this; a "timeout" fault makes the stand-in slower than it.
CLIENT_TIMEOUT = 0.2
SLOW = 0.02  # a slow answer that still beats the timeout
TOO_SLOW = 0.5
ATTEMPTS_PER_ROUND = 3
FAULTS = ("none", "none", "down", "random_503", "injected_5xx", "rate_limit", "reset_before",
          "reset_after", "slow", "timeout")  # fmt: skip


@dataclass
class Campaign:
    up: Upstream
    fake: FakeClock
    rng: random.Random
    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    faults: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    k: int = 0

    async def arrive(self, n: int) -> None:
        for _ in range(n):
            number = NUMBERS[self.rng.randrange(len(NUMBERS))]
            text = f"chaos {self.k}"
            self.k += 1
            await self.up.receive(number, "Svc", text)
            self.sent[number].append(text)

    def inject(self) -> None:
        """Set this round's fault (the previous round's are cleared first)."""
        stub = self.up.stub
        stub.set_down(False)
        stub.set_error_rate(0.0)
        stub.rate_limit(None)
        stub.set_latency(0.0)
        stub.resets.clear()
        fault = self.rng.choice(FAULTS)
        if fault == "timeout" and self.faults["timeout"] >= 4:
            fault = "slow"  # each costs real time (the client's timeout)
        self.faults[fault] += 1
        if fault == "down":
            stub.set_down(True)
        elif fault == "random_503":
            stub.set_error_rate(0.5)
        elif fault == "injected_5xx":
            stub.fail_next("addMessages", self.rng.choice([500, 502, 504]), count=2)
        elif fault == "rate_limit":
            stub.rate_limit(0.2)
            stub.admit()  # the bucket starts full: this round's first request is already over
        elif fault == "reset_before":
            stub.reset_connections(1, "addMessages")
        elif fault == "reset_after":
            stub.reset_connections(1, "addMessages", processed=True)
        elif fault == "slow":
            stub.set_latency(SLOW)
        elif fault == "timeout":
            stub.set_latency(TOO_SLOW)


@pytest.fixture
async def chaos(tmp_path: Path, carrier: Carrier) -> AsyncIterator[Campaign]:
    # Sleeping advances the clock at once; it starts just after the SCTS.
    fake = FakeClock(datetime(2026, 11, 25, 12, 5, tzinfo=UTC).timestamp(), jump=True)
    stub = Onlinesim(api_key=KEY, clock=fake, seed=11)
    served = await serve(stub, "127.0.0.1", 0)
    journal = await Journal.open(tmp_path)
    url = f"http://127.0.0.1:{served.port}"
    try:
        client = V2Client(carrier, url, KEY, timeout=CLIENT_TIMEOUT)
        await client.send_numbers_online([NumberEntry(number=n, country_id=7) for n in NUMBERS])
        up = Upstream(stub=stub, client=client, journal=journal, url=url, http=carrier)
        yield Campaign(up=up, fake=fake, rng=random.Random(2026))
    finally:
        await journal.close()
        await served.runner.cleanup()


async def test_every_fault_at_random_every_sms_arrives_in_order(chaos: Campaign) -> None:
    up, fake = chaos.up, chaos.fake
    ship = Shipper(
        up.journal, up.client, batch_max=8, batch_delay=0.0, sleep=fake.sleep, clock=fake
    )
    for _ in range(ROUNDS):
        chaos.inject()
        await chaos.arrive(chaos.rng.randrange(0, 6))
        for _ in range(ATTEMPTS_PER_ROUND):
            delay = await ship.ship_once()
            if delay is None:
                break
            await fake.sleep(delay)
    # The storm ends: everything left goes out.
    up.stub.set_down(False)
    up.stub.set_error_rate(0.0)
    up.stub.rate_limit(None)
    up.stub.set_latency(0.0)
    up.stub.resets.clear()
    await ship.drain()

    # Every fault kind fired, SMS arrived throughout.
    assert all(chaos.faults[f] > 0 for f in ("down", "random_503", "rate_limit", "timeout"))
    assert all(chaos.faults[f] > 0 for f in ("reset_before", "reset_after", "injected_5xx"))
    assert chaos.k > 200
    statuses = {r.status for r in up.stub.requests}
    assert {200, 429, 503}.issubset(statuses), statuses

    # Nothing lost, first arrivals in order per number.
    first_seen: dict[str, list[str]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    copies: dict[str, int] = defaultdict(int)
    for m in up.stub.messages:
        copies[m.message] += 1
        if (m.number, m.message) not in seen:
            seen.add((m.number, m.message))
            first_seen[m.number].append(m.message)
    assert first_seen == chaos.sent
    assert await up.journal.pending(10_000) == []
    assert up.journal.backlog == 0

    # Doubles only where the upstream took a request whose answer was lost, and recorded.
    ambiguous = chaos.faults["reset_after"] + chaos.faults["timeout"]
    doubled = [text for text, n in copies.items() if n > 1]
    assert up.stub.duplicates == sum(copies[t] - 1 for t in doubled)
    assert up.stub.duplicates <= ambiguous * 8  # at most one batch per such fault
    conn = sqlite3.connect(up.journal.path.parent / JOURNAL_FILE)
    try:
        attempts = dict(conn.execute("SELECT text, attempts FROM messages").fetchall())
    finally:
        conn.close()
    assert all(attempts[t] >= 2 for t in doubled)
    print(
        f"upstream chaos: {chaos.k} SMS over {ROUNDS} rounds, faults {dict(chaos.faults)};"
        f" {len(up.stub.requests)} requests; lost 0; duplicates {up.stub.duplicates}"
        f" (answers lost after processing: {ambiguous})"
    )
