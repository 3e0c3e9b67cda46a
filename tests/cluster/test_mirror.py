"""Operations learned from the cluster, copied into a real journal: an SMS on the SIM is matched
to the operation opened on another box, and pushed with an smsId no other box uses."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from muxd.cluster.mirror import mirror, open_here, sms_id_start, spread_sms_ids
from muxd.cluster.records import Operation
from muxd.store import Journal
from muxd.store.journal import JOURNAL_FILE
from muxd.upstream.v1.operations import assign_pending

from ..v1.conftest import receive

NUMBER = "+79001234567"


def shared(
    aid: int,
    created: float,
    *,
    state: str = "open",
    finished: float | None = None,
    status: int | None = 3,
    finish_sum: float | None = None,
) -> Operation:
    def at(t: float | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    return Operation(
        activation_id=aid,
        number=NUMBER,
        box="b",
        service="vk",
        country="russia",
        operator="mts",
        sum=10.0,
        rent=False,
        state=state,
        status=None if state == "open" else status,
        created=datetime.fromtimestamp(created, UTC),
        expires=None,
        finished=at(finished),
        finish_sum=finish_sum,
    )


async def test_an_sms_is_matched_to_an_operation_opened_on_another_box(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        start = await spread_sms_ids(journal, "b")
        now = time.time()
        assert (await mirror(journal, [shared(7, now - 300)])).numbers == [NUMBER]
        assert await open_here(journal) == [7]
        assert (await mirror(journal, [shared(7, now - 300)])).numbers == []  # no change
        await receive(journal, NUMBER, "VK", "VK: 123456", now - 250)
        done = await assign_pending(journal, 100, lambda *_: True, now)
        (push,) = done.pushes
        assert push.activation_id == 7
        assert push.sms_id > start >= 2**32  # b's own range of smsIds

        # Finished on another box: the window closes; an SMS well after it (beyond the SMSC's
        # clock tolerance) is not this operation's.
        closed = shared(7, now - 300, state="finished", finished=now - 200)
        assert (await mirror(journal, [closed])).numbers == [NUMBER]
        assert await open_here(journal) == []
        await receive(journal, NUMBER, "VK", "VK: 654321", now)
        later = await assign_pending(journal, 100, lambda *_: True, now)
        assert later.pushes == []
    finally:
        await journal.close()


async def test_a_missed_close_is_repaired_by_the_next_operation(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        now = time.time()
        await mirror(journal, [shared(1, now - 100)])
        # Operation 1 was finished while this box did not hear; operation 2 opens on the number.
        await mirror(journal, [shared(2, now - 50)])
        assert await open_here(journal) == [2]
        # An operation opened and finished while this box was away is copied closed.
        await mirror(journal, [shared(3, now - 40, state="finished", finished=now - 45)])
        assert await open_here(journal) == [2]
    finally:
        await journal.close()


async def test_a_finish_is_credited_once_when_its_status_arrives(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        now = time.time()
        assert (await mirror(journal, [shared(1, now - 100)])).credited == []
        done = shared(1, now - 100, state="finished", finished=now - 10, finish_sum=12.5)
        (credit,) = (await mirror(journal, [done])).credited
        assert (credit.op.activation_id, credit.status, credit.finish_sum) == (1, 3, 12.5)
        # The same again (a repeated notification, the reconcile): nothing more.
        assert (await mirror(journal, [done, done])).credited == []
        # Expired without a FINISH: no status, nothing credited; its late FINISH is, once.
        await mirror(journal, [shared(2, now - 50)])
        expired = shared(2, now - 50, state="expired", finished=now - 5, status=None)
        assert (await mirror(journal, [expired])).credited == []
        late = shared(2, now - 50, state="expired", finished=now - 5, status=3)
        assert [c.op.activation_id for c in (await mirror(journal, [late])).credited] == [2]
        assert (await mirror(journal, [late])).credited == []
        # Finished before this box heard of it: credited as it is copied, once.
        gone = shared(3, now - 40, state="finished", finished=now - 30, status=4)
        assert [c.status for c in (await mirror(journal, [gone, gone])).credited] == [4]
        # The journal keeps the FINISH's sum (``muxd v1 sales`` reports it).
        with sqlite3.connect(tmp_path / JOURNAL_FILE) as conn:
            rows = conn.execute(
                "SELECT activation_id, status, finish_sum FROM operations ORDER BY 1"
            ).fetchall()
        assert rows == [(1, 3, 12.5), (2, 3, None), (3, 4, None)]
    finally:
        await journal.close()


def test_boxes_number_their_sms_ids_apart() -> None:
    starts = {sms_id_start(name) for name in ("a", "b", "c", "rack-1", "rack-2")}
    assert len(starts) == 5
    assert all(s < 2**53 - 2**32 for s in starts)
