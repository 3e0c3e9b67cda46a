"""v2 ``list`` mode under load: SMS keep arriving on every box's SIMs while a box is killed with
-9 and started again. The fleet's list (published by one box at a time) drops the killed box's
numbers within its lease and takes them back when it returns; every SMS reaches Onlinesim's
stand-in (the killed box's wait on its SIMs), none more than once but for the batch a kill can
cut between Onlinesim's answer and the journal's record of it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

from muxd.cluster.v2list import ACQUIRE_INTERVAL, FLEET_POLL
from muxd.config import DEFAULT_BATCH_MAX
from muxd_sim.ledger import Delivery, Ledger
from muxd_sim.onlinesim import Onlinesim, serve

from .boxes import KEY, LEASE, WAIT, Box, Load, cluster, until

BOXES: Final = ["a", "b", "c"]
PORTS: Final = 4
# A killed box's SIMs keep what arrives until it is back.
CAPACITY: Final = 100
# SMS accepted by the stand-in before the kill, and after the return: the load in full flow.
ACCEPTED: Final = 60
# The killed box's numbers leave the list within its lease, plus the holder's next look (or,
# when the killed box held the lock, another box's next try) and a publication.
LISTED_WITHIN: Final = LEASE + ACQUIRE_INTERVAL + FLEET_POLL + 2.0
SETTLE_WAIT: Final = 60.0


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[tuple[Onlinesim, str]]:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    try:
        yield stub, f"http://127.0.0.1:{served.port}"
    finally:
        await served.runner.cleanup()


def listed(stub: Onlinesim, boxes: Sequence[Box]) -> bool:
    return set(stub.numbers) == {n for box in boxes for n in box.numbers}


async def settle(stub: Onlinesim, boxes: Sequence[Box], load: Load) -> None:
    """Until every SMS reached the stand-in, every SIM is empty and every box's backlog too."""
    expected = set(load.ledger.by_key)

    async def settled() -> bool:
        if not expected <= {(m.number, m.from_, m.message) for m in stub.messages}:
            return False
        if any(port.state.used for box in boxes for port in box.sim.ports):
            return False
        backlogs = [(await box.totals())["backlog"] for box in boxes]
        return backlogs == [0] * len(boxes)

    await until(settled, "every SMS delivered, SIMs and backlogs empty", SETTLE_WAIT, boxes)


async def test_a_box_killed_under_load_leaves_the_list_and_delivers_every_sms(
    tmp_path: Path, dsn: str
) -> None:
    async with (
        stand_in() as (stub, url),
        cluster(tmp_path, dsn, BOXES, PORTS, capacity=CAPACITY, upstream=url) as (boxes, _, _),
    ):
        a, b, c = boxes
        await stub.wait_until(lambda: listed(stub, boxes), timeout=WAIT)
        load = Load(boxes)
        for box in boxes:
            for number in box.numbers:
                load.opened(number)  # every listed number's SMS must arrive

        async with load.running():
            await stub.wait_for_messages(ACCEPTED, timeout=WAIT)
            c.kill()
            await c.wait_dead()
            killed = time.monotonic()
            await stub.wait_until(lambda: listed(stub, [a, b]), timeout=LISTED_WITHIN + WAIT)
            assert time.monotonic() - killed < LISTED_WITHIN

            await c.start()
            await stub.wait_until(lambda: listed(stub, boxes), timeout=WAIT)
            await stub.wait_for_messages(len(stub.messages) + ACCEPTED, timeout=WAIT)

        await settle(stub, boxes, load)
        ledger: Ledger = load.ledger
        for m in stub.messages:
            ledger.add_delivery(Delivery(m.received_at, m.number, m.from_, m.message))
        assert ledger.lost() == [], f"{len(ledger.lost())} SMS never delivered"
        assert ledger.unknown() == [], ledger.unknown()[:5]
        # v2 has no idempotency key: the kill may cut one batch between the answer and the
        # journal's record of it, sent again after the restart.
        again = ledger.duplicates()
        assert sum(n - 1 for n in again.values()) <= DEFAULT_BATCH_MAX, again
        assert load.stray == 0
        assert len(ledger.sent) > 2 * ACCEPTED
        # No SMS went out for a number Onlinesim's list did not have: the restarted box held
        # its SMS until a list with its numbers was accepted (and recorded).
        refused = [r for r in stub.requests if r.reason == "NO_NUMBER"]
        assert refused == [], refused[:3]
