"""Operations learned from the cluster, copied into a real journal: an SMS on the SIM is matched
to the operation opened on another box, and pushed with an smsId no other box uses."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from muxd.cluster.mirror import mirror, open_here, sms_id_start, spread_sms_ids
from muxd.cluster.records import Operation
from muxd.store import Journal
from muxd.upstream.v1.operations import assign_pending

from ..v1.conftest import receive

NUMBER = "+79001234567"


def shared(
    aid: int, created: float, *, state: str = "open", finished: float | None = None
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
        status=None if state == "open" else 3,
        created=datetime.fromtimestamp(created, UTC),
        expires=None,
        finished=at(finished),
    )


async def test_an_sms_is_matched_to_an_operation_opened_on_another_box(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        start = await spread_sms_ids(journal, "b")
        now = time.time()
        assert await mirror(journal, [shared(7, now - 300)]) == [NUMBER]
        assert await open_here(journal) == [7]
        assert await mirror(journal, [shared(7, now - 300)]) == []  # nothing new: no change
        await receive(journal, NUMBER, "VK", "VK: 123456", now - 250)
        done = await assign_pending(journal, 100, lambda *_: True, now)
        (push,) = done.pushes
        assert push.activation_id == 7
        assert push.sms_id > start >= 2**32  # b's own range of smsIds

        # Finished on another box: the window closes; an SMS well after it (beyond the SMSC's
        # clock tolerance) is not this operation's.
        assert await mirror(journal, [shared(7, now - 300, state="finished", finished=now - 200)])
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


def test_boxes_number_their_sms_ids_apart() -> None:
    starts = {sms_id_start(name) for name in ("a", "b", "c", "rack-1", "rack-2")}
    assert len(starts) == 5
    assert all(s < 2**53 - 2**32 for s in starts)
