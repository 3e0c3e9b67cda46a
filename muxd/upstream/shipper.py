"""Ships journaled SMS to Onlinesim v2 in batches and marks them delivered on ``response: 1``.

A message is marked delivered only after the upstream acknowledged it, so a crash replays only
what was not acknowledged. addMessages batches; when the server answers 404/405 to it, the
shipper falls back to addMessage per SMS for the rest of its life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from muxd.errors import UpstreamError
from muxd.store import Journal, PendingMessage
from muxd.upstream.v2 import MessageItem, V2Client

LOGGER = logging.getLogger(__name__)

# After a failed delivery, try again this soon (mirrors the PUSH_SMS retry cadence).
RETRY_DELAY = 10.0
# Even without a new-message signal, look at the journal this often (catches a replay after
# a restart and anything a lost wake-up would strand).
IDLE_POLL = 30.0
# HTTP statuses meaning "this endpoint does not exist here".
NO_ENDPOINT = (404, 405)


def to_item(msg: PendingMessage) -> MessageItem:
    return MessageItem(
        date=str(msg.sms_time), number=msg.number, sender=msg.sender, message=msg.text
    )


class Shipper:
    def __init__(
        self,
        journal: Journal,
        client: V2Client,
        *,
        batch_max: int,
        batch_delay: float,
        on_delivered: Callable[[list[PendingMessage], float], None] | None = None,
    ) -> None:
        self._journal = journal
        self._client = client
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._on_delivered = on_delivered
        self._batch_endpoint = True

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(IDLE_POLL):
                    await self._journal.new_messages.wait()
            except TimeoutError:
                pass
            if self._batch_delay > 0:
                await asyncio.sleep(self._batch_delay)  # linger so a batch can fill
            self._journal.new_messages.clear()
            while await self.ship_once():
                pass

    async def ship_once(self) -> bool:
        """Send one batch; True when more may be waiting."""
        batch = await self._journal.pending(self._batch_max)
        if not batch:
            return False
        if self._batch_endpoint:
            try:
                await self._client.add_messages([to_item(m) for m in batch])
            except UpstreamError as exc:
                if exc.status not in NO_ENDPOINT:
                    return await self._failed(batch, exc)
                LOGGER.warning("addMessages answered %s; using addMessage", exc.status)
                self._batch_endpoint = False
            else:
                await self._delivered(batch)
                return len(batch) >= self._batch_max
        for msg in batch:
            # One by one: each acknowledged SMS is marked at once, so a later failure in the
            # same batch never causes a resend of an acknowledged one.
            try:
                await self._client.add_message(to_item(msg))
            except UpstreamError as exc:
                return await self._failed([msg], exc)
            await self._delivered([msg])
        return len(batch) >= self._batch_max

    async def _delivered(self, batch: list[PendingMessage]) -> None:
        now = time.time()
        await self._journal.mark_delivered([m.id for m in batch], now)
        if self._on_delivered is not None:
            self._on_delivered(batch, now)

    async def _failed(self, batch: list[PendingMessage], exc: UpstreamError) -> bool:
        LOGGER.warning("delivery of %d SMS failed: %s", len(batch), exc)
        await self._journal.mark_failed([m.id for m in batch], str(exc))
        await asyncio.sleep(RETRY_DELAY)
        return True
