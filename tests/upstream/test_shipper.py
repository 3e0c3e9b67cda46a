"""The shipper against the real stand-in: batching, fallback, outages, refusals."""

from __future__ import annotations

from collections import defaultdict

import pytest

from muxd.store import PendingMessage
from muxd.upstream.shipper import AUTH_RETRY, NO_NUMBER_ATTEMPTS, RETRY_CAP, Shipper
from muxd.upstream.v2 import V2Client
from muxd_sim.clock import FakeClock
from tests.upstream.conftest import KEY, NUMBERS, Upstream


def jumping() -> FakeClock:
    """An injected clock: sleeping advances it at once."""
    return FakeClock(0.0, jump=True)


def shipper(up: Upstream, fake: FakeClock, **kwargs: object) -> Shipper:
    return Shipper(
        up.journal,
        up.client,
        batch_max=kwargs.pop("batch_max", 10),  # type: ignore[arg-type]
        batch_delay=0.0,
        sleep=fake.sleep,
        clock=fake,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_batches_of_at_most_batch_max(upstream: Upstream) -> None:
    for i in range(25):
        await upstream.receive(NUMBERS[i % 3], "Bank", f"code {i}")
    await shipper(upstream, jumping()).drain()
    batches = [r for r in upstream.stub.requests if r.endpoint == "addMessages"]
    assert [r.status for r in batches] == [200, 200, 200]
    assert [m.message for m in upstream.stub.messages] == [f"code {i}" for i in range(25)]
    assert await upstream.journal.pending(100) == []
    assert upstream.journal.backlog == 0


async def test_falls_back_to_add_message_on_404(upstream: Upstream) -> None:
    upstream.stub.disable_add_messages(True)
    for i in range(4):
        await upstream.receive(NUMBERS[0], "Bank", f"code {i}")
    await shipper(upstream, jumping()).drain()
    assert [m.via for m in upstream.stub.messages] == ["addMessage"] * 4
    assert upstream.stub.duplicates == 0


async def test_an_hour_long_outage_drains_in_order_without_duplicates(upstream: Upstream) -> None:
    fake = jumping()
    stub = upstream.stub
    stub.set_down(True)
    ship = shipper(upstream, fake)
    sent: dict[str, list[str]] = defaultdict(list)
    k = 0
    # SMS keep arriving while the upstream is down for a simulated hour.
    while fake.now < 3600:
        for _ in range(3):
            number = NUMBERS[k % 3]
            text = f"sms {k}"
            await upstream.receive(number, "Svc", text)
            sent[number].append(text)
            k += 1
        delay = await ship.ship_once()
        assert delay is not None
        assert delay > 0
        await fake.sleep(delay)
    assert stub.messages == []
    attempts = len(stub.requests)
    # Capped backoff: an hour costs a bounded number of requests, none closer than needed.
    assert attempts <= 40
    assert max(fake.sleeps) <= RETRY_CAP
    stub.set_down(False)
    await ship.drain()
    got: dict[str, list[str]] = defaultdict(list)
    for m in stub.messages:
        got[m.number].append(m.message)
    assert got == sent
    assert stub.duplicates == 0
    assert await upstream.journal.pending(1000) == []


async def test_refused_sms_is_parked_and_the_rest_delivered(upstream: Upstream) -> None:
    parked: list[tuple[PendingMessage, str]] = []
    await upstream.receive(NUMBERS[0], "Bank", "first")
    bad = await upstream.receive(NUMBERS[1], "Bank", "")  # empty text: ERROR_PARAMS
    await upstream.receive(NUMBERS[2], "Bank", "third")
    ship = shipper(upstream, jumping(), on_parked=lambda m, r: parked.append((m, r)))
    await ship.drain()
    assert [m.message for m in upstream.stub.messages] == ["first", "third"]
    assert [(m.id, "ERROR_PARAMS" in r) for m, r in parked] == [(bad, True)]
    # The last delivered mark is a deferred write; the counts are read as of the last commit.
    await upstream.journal.flush()
    stats = await upstream.journal.stats()
    assert stats["messages_parked"] == 1
    assert stats["messages_delivered"] == 2


async def test_no_number_republishes_then_parks(upstream: Upstream) -> None:
    requests: list[int] = []
    fake = jumping()
    await upstream.receive("+79009999999", "Bank", "to an unlisted number")
    ship = shipper(upstream, fake, republish=lambda: requests.append(1))
    await ship.drain()
    assert len(requests) == NO_NUMBER_ATTEMPTS - 1
    assert upstream.stub.messages == []
    assert (await upstream.journal.stats())["messages_parked"] == 1


async def test_wrong_key_is_an_alarm_retried_slowly(upstream: Upstream) -> None:
    await upstream.receive(NUMBERS[0], "Bank", "code")
    client = V2Client(upstream.http, upstream.url, KEY + "-wrong")
    ship = Shipper(
        upstream.journal,
        client,
        batch_max=10,
        batch_delay=0.0,
        sleep=jumping().sleep,
    )
    assert await ship.ship_once() == pytest.approx(AUTH_RETRY)
    assert ship.auth_failed
    assert len(await upstream.journal.pending(10)) == 1


async def test_sms_of_an_unlisted_number_is_held_until_listed_again(upstream: Upstream) -> None:
    listed = {NUMBERS[0]}
    await upstream.receive(NUMBERS[0], "Bank", "to a listed number")
    await upstream.receive(NUMBERS[1], "Bank", "while the port is down")
    ship = shipper(upstream, jumping(), listed=lambda: frozenset(listed))
    await ship.drain()
    assert [m.message for m in upstream.stub.messages] == ["to a listed number"]
    stats = await upstream.journal.stats()
    assert stats["messages_held"] == 1
    assert upstream.journal.backlog == 1  # held SMS are still backlog, never dropped
    # The port comes back: the publisher lists the number and releases what was held.
    listed.add(NUMBERS[1])
    assert await upstream.journal.release_held([NUMBERS[1]]) == 1
    await ship.drain()
    assert [m.message for m in upstream.stub.messages][-1] == "while the port is down"
    assert upstream.journal.backlog == 0
    assert upstream.stub.duplicates == 0
