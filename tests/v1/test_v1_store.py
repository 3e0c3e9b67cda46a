"""The v1 tables on a real journal file: atomic reservation, idempotent finish, expiry,
assignment of SMS to operations, restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from muxd.store import Journal
from muxd.store.journal import JOURNAL_FILE
from muxd.store.schema import SCHEMA_VERSION
from muxd.upstream.v1.operations import (
    Reservation,
    assign_pending,
    expire,
    finish,
    load_state,
    mark_push_attempt,
    operation_counts,
    pending_pushes,
    reserve,
    settle_push,
)
from muxd.upstream.v1.opmatch import Matching

from .conftest import receive

N1, N2 = "+79001110001", "+79001110002"
T0 = 1_764_000_000.0  # SMSC stamps need a year within 2000..2099


def at(x: float) -> float:
    """A time in the test's scale: minutes apart where the old scale had seconds apart."""
    return T0 + 10 * x


def res(
    number: str = N1, service: str = "vk", when: float = at(100), *, rent: bool = False
) -> Reservation:
    return Reservation(number, service, "russia", "mts", 12.5, rent, when, None)


def always(_service: str, _sender: str, _text: str) -> bool:
    return True


@pytest.fixture
async def journal(tmp_path: Path) -> Journal:
    j = await Journal.open(tmp_path)
    yield j  # type: ignore[misc]
    await j.close()


async def test_schema_has_the_v1_tables(tmp_path: Path, journal: Journal) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"operations", "sold", "pushes"} <= tables


async def test_concurrent_reservations_never_share_a_number(journal: Journal) -> None:
    results = await asyncio.gather(*(reserve(journal, res(service=s)) for s in ("vk", "wa", "tg")))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state == "open"
    assert 1 <= winners[0].activation_id < 2**63


async def test_activation_ids_are_random_64_bit_and_distinct(journal: Journal) -> None:
    ids = []
    for i in range(50):
        op = await reserve(journal, res(f"+7900222{i:04d}"))
        assert op is not None
        ids.append(op.activation_id)
    assert len(set(ids)) == 50
    assert max(ids) > 2**53  # 63 random bits: far above what a double holds exactly
    small = await reserve(journal, res("+79003330000"), id_bits=31)
    assert small is not None
    assert small.activation_id < 2**31


async def test_finish_is_idempotent_and_status_3_sells(journal: Journal) -> None:
    op = await reserve(journal, res())
    assert op is not None
    outcome, found = await finish(journal, op.activation_id, 3, 4.5, at(200), sells=True)
    assert outcome == "finished"
    assert found is not None
    assert found.number == N1
    again, _ = await finish(journal, op.activation_id, 4, None, at(300), sells=False)
    assert again == "repeat"
    assert (await finish(journal, 12345, 3, None, at(300), sells=True))[0] == "unknown"
    state = await load_state(journal)
    assert state.open == []
    assert state.sold == [(N1, "vk")]
    # sold for vk: refused for vk, fine for wa
    assert await reserve(journal, res(service="vk", when=at(400))) is None
    assert await reserve(journal, res(service="wa", when=at(400))) is not None


async def test_cancel_releases_for_the_same_service(journal: Journal) -> None:
    op = await reserve(journal, res())
    assert op is not None
    assert await reserve(journal, res(service="wa")) is None  # one operation at a time
    assert (await finish(journal, op.activation_id, 4, None, at(200), sells=False))[0] == "finished"
    again = await reserve(journal, res(when=at(300)))
    assert again is not None
    assert again.activation_id != op.activation_id


async def test_expiry_then_a_late_finish_is_recorded(journal: Journal) -> None:
    op = await reserve(journal, res())
    assert op is not None
    assert await expire(journal, [op.activation_id], at(2000)) == [op.activation_id]
    assert await expire(journal, [op.activation_id], at(2001)) == []
    newer = await reserve(journal, res(service="wa", when=at(2002)))
    assert newer is not None
    outcome, _ = await finish(journal, op.activation_id, 3, None, at(2003), sells=True)
    assert outcome == "late"
    assert (await finish(journal, op.activation_id, 3, None, at(2004), sells=True))[0] == "repeat"
    state = await load_state(journal)
    assert [o.activation_id for o in state.open] == [newer.activation_id]  # untouched
    assert state.sold == [(N1, "vk")]
    assert state.last_used[N1] == at(2002)


async def test_rent_is_never_sold_per_service(journal: Journal) -> None:
    op = await reserve(journal, res(service="rent", rent=True))
    assert op is not None
    assert op.rent
    assert op.expires_at is None
    await finish(journal, op.activation_id, 3, 870.0, at(200), sells=True)
    assert (await load_state(journal)).sold == []


async def test_sms_are_given_the_operation_open_when_they_arrived(journal: Journal) -> None:
    before = await receive(journal, N1, "VK", "too early", at(50))
    op = await reserve(journal, res(when=at(100)))
    assert op is not None
    during = await receive(journal, N1, "VK", "code 1", at(150))
    elsewhere = await receive(journal, N2, "VK", "no operation here", at(150))
    await finish(journal, op.activation_id, 4, None, at(200), sells=False)
    after = await receive(journal, N1, "VK", "too late", at(250))
    done = await assign_pending(journal, 100, always, at(300))
    assert done.scanned == 4
    assert done.no_operation == 3
    (push,) = done.pushes
    assert (push.message_id, push.activation_id, push.text) == (during, op.activation_id, "code 1")
    assert push.number == N1
    assert not push.rent
    assert push.sms_id >= 1
    # a second pass finds nothing new: the pending push is not doubled
    again = await assign_pending(journal, 100, always, at(301))
    assert again.scanned == 0
    assert [p.sms_id for p in await pending_pushes(journal)] == [push.sms_id]
    states = await journal.stats()
    assert states["messages_unmatched"] == 3  # looked at again when operations change
    assert states["messages_pending"] == 1
    del before, elsewhere, after


async def test_filtered_sms_are_recorded_not_pushed(journal: Journal) -> None:
    op = await reserve(journal, res())
    assert op is not None
    await receive(journal, N1, "Telegram", "code 1", at(150))
    done = await assign_pending(journal, 100, lambda s, snd, t: snd == "VK", at(300))
    assert done.filtered == 1
    assert done.pushes == []
    counts = await operation_counts(journal)
    assert counts["pushes_filtered"] == 1
    assert (await journal.stats())["messages_filtered"] == 1


async def test_settled_push_marks_the_message(journal: Journal) -> None:
    op = await reserve(journal, res())
    assert op is not None
    await receive(journal, N1, "VK", "code 1", at(150))
    await receive(journal, N1, "VK", "code 2", at(151))
    p1, p2 = (await assign_pending(journal, 100, always, at(300))).pushes
    assert p2.sms_id > p1.sms_id
    await mark_push_attempt(journal, [p1.sms_id])
    assert await settle_push(journal, p1, "delivered", "SUCCESS", at(301))
    assert not await settle_push(journal, p1, "delivered", "SUCCESS", at(302))  # once
    assert await settle_push(journal, p2, "rejected", "BAD_SERVICE", at(303))
    stats = await journal.stats()
    assert stats["messages_delivered"] == 1
    assert stats["messages_rejected"] == 1
    assert await pending_pushes(journal) == []
    counts = await operation_counts(journal)
    assert counts["pushes_delivered"] == 1
    assert counts["pushes_rejected"] == 1


async def test_state_survives_reopening(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    op = await reserve(journal, res())
    sold = await reserve(journal, res(N2))
    assert op is not None
    assert sold is not None
    await finish(journal, sold.activation_id, 3, None, at(200), sells=True)
    await receive(journal, N1, "VK", "code 1", at(150))
    (push,) = (await assign_pending(journal, 100, always, at(300))).pushes
    await journal.close()
    journal = await Journal.open(tmp_path)
    try:
        state = await load_state(journal)
        assert [o.activation_id for o in state.open] == [op.activation_id]
        assert state.sold == [(N2, "vk")]
        assert [p.sms_id for p in await pending_pushes(journal)] == [push.sms_id]
    finally:
        await journal.close()


async def test_unmatched_sms_are_looked_at_again_only_where_operations_changed(
    journal: Journal,
) -> None:
    matching = Matching()
    lonely = await receive(journal, N2, "VK", "nobody's", at(90))
    early = await receive(journal, N1, "VK", "before the operation", at(90))
    first = await assign_pending(journal, 100, always, at(95), matching=matching)
    assert sorted(first.unmatched) == sorted([lonely, early])
    assert first.no_operation == 2
    op = await reserve(journal, res(when=at(100)))
    assert op is not None
    matching.changed(N1)
    again = await assign_pending(journal, 100, always, at(101), matching=matching)
    assert again.unmatched == [early]  # N2 was not looked at
    assert again.no_operation == 0  # counted once
    assert set(matching.waiting) == {lonely, early}
