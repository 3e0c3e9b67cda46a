"""Ships journaled SMS to Onlinesim v2 in batches and marks them delivered on ``response: 1``.

A message is marked delivered only after the upstream acknowledged it, so a crash replays only
what was not acknowledged. Messages go out in journal order; a failing head is retried before
anything behind it, so the order per receiving number is kept.

Batching adapts to the load: one request is in flight at a time. When none is, what is pending
goes out at once (an SMS alone travels alone, with no added latency); while one is, new SMS
accumulate and go out together, up to ``batch_max``, as soon as it returns. Under load the
batches fill by themselves, one request per round trip. ``batch_delay``, when set, makes a
batch wait to fill instead: it goes out when ``batch_max`` SMS are pending or when its oldest
SMS has waited ``batch_delay`` seconds, whichever comes first (never while another request is
in flight).

Failure policy (Onlinesim's v2 docs publish no retry rules; these are ours):
- 5xx, timeouts, connection resets, refused connections, DNS failures, 429: capped exponential
  backoff with jitter from the start of the failed attempt, at least :data:`RETRY_FLOOR` after
  it, and no sooner than the upstream's ``Retry-After``; retried until accepted, never
  dropped; one log line when delivery starts failing, one when it recovers, a summary every
  5 minutes in between (:class:`~muxd.upstream.backoff.RetryLoop`);
- 404/405 to addMessages: fall back to addMessage per SMS for the rest of the process;
- 400 on a batch: the batch is re-sent one SMS at a time to find the culprit;
- 400 ``NO_NUMBER`` on one SMS: ask the publisher to republish, retry a bounded number of
  times, then park it (visible, replayable);
- any other 400: park it with the reason;
- 401/403: alarm state (metrics, status), retried slowly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet

from muxd.errors import JournalError, UpstreamError
from muxd.log import mask_number
from muxd.store import Journal, PendingMessage
from muxd.store.journal import UNLISTED
from muxd.upstream.backoff import Policy, RetryLoop
from muxd.upstream.v2 import MessageItem, V2Client

LOGGER = logging.getLogger(__name__)

# Transient failures: first retry after 1 s, doubling up to 5 minutes (an hour-long outage costs
# a dozen requests, and delivery resumes within 5 minutes of the upstream's return).
RETRY_FIRST = 1.0
RETRY_CAP = 300.0
# The least time between a failed attempt's end and the next one (an instant failure waits too).
RETRY_FLOOR = 1.0
RETRY_POLICY = Policy(first=RETRY_FIRST, cap=RETRY_CAP, floor=RETRY_FLOOR)
# Credentials refused: nothing will work until an operator acts; knock every 5 minutes.
AUTH_RETRY = 300.0
# NO_NUMBER: the number may just not be listed yet; retry this many times after a republish.
NO_NUMBER_ATTEMPTS = 5
# Even without a new-message signal, look at the journal this often (catches anything a lost
# wake-up would strand).
IDLE_POLL = 30.0
# On a stop, a batch already on the wire may have been accepted upstream: its answer and the
# commit of "delivered" are awaited this long (v2 has no idempotency key, so an answer dropped
# here is a duplicate after the restart). A second SIGTERM does not wait.
STOP_GRACE = 10.0
# After a journal failure, the next attempt waits this long: a commit failure is waited out
# (intake is stopped until a probe write succeeds), but one operation failing on its own (a
# constraint, a bug) leaves the journal healthy, and must not be retried at once.
JOURNAL_RETRY = 5.0
# HTTP statuses meaning "this endpoint does not exist here".
NO_ENDPOINT = (404, 405)
AUTH_FAILED = (401, 403)

Sleep = Callable[[float], Awaitable[None]]


def to_item(msg: PendingMessage) -> MessageItem:
    return MessageItem(
        date=str(msg.sms_time), number=msg.number, sender=msg.sender, message=msg.text
    )


def is_transient(exc: UpstreamError) -> bool:
    return exc.status == 0 or exc.status == 429 or exc.status >= 500


class Shipper:
    def __init__(
        self,
        journal: Journal,
        client: V2Client,
        *,
        batch_max: int,
        batch_delay: float | None = None,
        on_delivered: Callable[[list[PendingMessage], float], None] | None = None,
        on_parked: Callable[[PendingMessage, str], None] | None = None,
        republish: Callable[[], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        listed: Callable[[], AbstractSet[str]] | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        # The numbers on the upstream's list right now (a snapshot: it is read in the journal's
        # thread). SMS of unlisted numbers are held (the upstream would answer NO_NUMBER) and
        # released when the publisher lists their number again.
        self._listed = listed
        self._journal = journal
        self._client = client
        self._batch_max = batch_max
        # None (or 0): adaptive, send whenever no request is in flight. Otherwise the longest a
        # batch waits to fill.
        self._batch_delay = batch_delay or None
        # When the last batch was taken from the journal (timer clock): anything pending after
        # it was sent arrived after this, so its wait to fill is counted from here at most.
        self._taken_at: float | None = None
        self._on_delivered = on_delivered
        self._on_parked = on_parked
        self._republish = republish
        self._sleep = sleep
        self._clock = clock
        self._batch_endpoint = True
        self._timer = timer  # when attempts start (monotonic: a wall-clock step moves nothing)
        self.loop = RetryLoop(
            "shipper", RETRY_POLICY, clock=timer, logger=LOGGER, what="delivering SMS"
        )
        self._no_number: dict[int, int] = {}  # message id -> NO_NUMBER answers so far
        # Acknowledged upstream, not yet recorded as delivered (the journal failed meanwhile).
        self._unrecorded: list[PendingMessage] = []
        self.auth_failed = False
        self.last_error: str | None = None
        self._journal_failing = False

    async def run(self) -> None:
        # What an earlier process left pending (a crash, a stop, an outage) goes out now, not
        # on the next new SMS or after IDLE_POLL.
        await self.drain()
        new_messages = self._journal.new_messages
        while True:
            if new_messages.is_set():
                # SMS arrived while the last request was in flight: they have waited since it
                # was taken at most.
                since = self._timer() if self._taken_at is None else self._taken_at
            elif self._batch_delay is None and not self._unrecorded:
                taken = await self._ride()
                new_messages.clear()  # the batch was taken after everything announced so far
                await self.drain(taken)
                continue
            else:
                try:
                    async with asyncio.timeout(IDLE_POLL):
                        await new_messages.wait()
                except TimeoutError:
                    pass
                since = self._timer()
            if self._batch_delay is not None:
                await self._fill(since + self._batch_delay)
            new_messages.clear()
            await self.drain()

    async def _ride(self) -> tuple[list[PendingMessage], int] | None:
        """Idle, adaptive batches: the next batch is taken at the end of the transaction that
        stores the next SMS (no round trip of its own to the writer thread). None after
        IDLE_POLL without one, or when the journal failed (``drain`` waits that out)."""
        listed = self._listed
        deadline = asyncio.get_running_loop().time() + IDLE_POLL
        try:
            while True:
                taken = await self._journal.take_riding(self._batch_max, listed, deadline=deadline)
                if taken[0] or taken[1] >= self._batch_max:  # something, or all held
                    self._taken_at = self._timer()
                    return taken
                # A transaction that made nothing to send (a part of a set, a v1 write):
                # wait for the next.
        except (TimeoutError, JournalError):
            return None

    async def _fill(self, deadline: float) -> None:
        """Wait until ``batch_max`` SMS are waiting (the backlog counts held ones too, which
        can only make a batch leave early) or the ``deadline`` (timer clock) has come."""
        new_messages = self._journal.new_messages
        while self._journal.backlog < self._batch_max:
            remaining = deadline - self._timer()
            if remaining <= 0:
                return
            new_messages.clear()  # each arrival sets it again: count the backlog then
            arrival = asyncio.ensure_future(new_messages.wait())
            timer = asyncio.ensure_future(self._sleep(remaining))
            try:
                await asyncio.wait((arrival, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrival.cancel()
                timer.cancel()

    async def drain(self, taken: tuple[list[PendingMessage], int] | None = None) -> None:
        """Ship until the journal has nothing pending, sleeping between failed attempts;
        ``taken``: a batch already taken, shipped first."""
        while True:
            try:
                # Taken once: after a failure the next attempt takes again (what was
                # acknowledged meanwhile must not be sent twice).
                first, taken = taken, None
                delay = await self.ship_once(first)
            except JournalError as exc:
                # The disk is full or broken: nothing can be recorded, so nothing is sent.
                if not self._journal_failing:  # one line per state change, not per attempt
                    LOGGER.error("shipping paused: %s", exc)
                self._journal_failing = True
                await self._journal.wait_healthy()
                await self._sleep(JOURNAL_RETRY)
                continue
            if self._journal_failing:
                LOGGER.warning("shipping resumed: the journal records again")
                self._journal_failing = False
            if delay is None:
                return
            if delay > 0:
                await self._sleep(delay)

    async def ship_once(
        self, taken: tuple[list[PendingMessage], int] | None = None
    ) -> float | None:
        """One attempt (of ``taken`` when given). None: nothing left to ship. Otherwise the
        delay before the next one."""
        if self._unrecorded:
            # Acknowledged upstream while the journal could not record it: record it first, so
            # it is never sent again.
            unrecorded, self._unrecorded = self._unrecorded, []
            await self._delivered(unrecorded)
        if taken is None:
            # One transaction picks the batch, holds what is unlisted and records the attempt.
            listed = self._listed() if self._listed is not None else None
            self._taken_at = self._timer()
            taken = await self._journal.take_batch(self._batch_max, listed)
        batch, looked_at = taken
        more = looked_at >= self._batch_max  # fewer: this was all that was pending
        if not batch:
            return 0.0 if more else None
        exchange = asyncio.create_task(self._exchange(batch), name="shipper-exchange")
        try:
            delay = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            # Stopping: let the batch on the wire finish (see STOP_GRACE).
            try:
                await asyncio.wait({exchange}, timeout=STOP_GRACE)
            finally:
                exchange.cancel()
                if exchange.done() and not exchange.cancelled() and exchange.exception():
                    LOGGER.error("batch failed while stopping: %s", exchange.exception())
            raise
        # Sent, and nothing else was pending: anything newer raised ``new_messages`` again.
        return None if delay == 0.0 and not more else delay

    async def _exchange(self, batch: list[PendingMessage]) -> float:
        started = self._timer()
        try:
            if self._batch_endpoint:
                await self._send_batch(batch)
            else:
                await self._send_each(batch)
        except UpstreamError as exc:
            return self._failed(started, exc)
        self.loop.succeeded()
        self.auth_failed = False
        self.last_error = None
        return 0.0

    async def _send_batch(self, batch: list[PendingMessage]) -> None:
        try:
            await self._client.add_messages([to_item(m) for m in batch])
        except UpstreamError as exc:
            if exc.status in NO_ENDPOINT:
                LOGGER.warning("addMessages answered %s; using addMessage", exc.status)
                self._batch_endpoint = False
            elif exc.status != 400:
                raise
            # 400: something in the batch is refused; find it one SMS at a time.
            await self._send_each(batch)
            return
        await self._delivered(batch)

    async def _send_each(self, batch: list[PendingMessage]) -> None:
        for msg in batch:
            # Each acknowledged SMS is marked at once, so a later failure in the same batch
            # never causes a resend of an acknowledged one.
            try:
                await self._client.add_message(to_item(msg))
            except UpstreamError as exc:
                if exc.status != 400 or not await self._refused(msg, exc):
                    raise
                continue
            await self._delivered([msg])

    async def _refused(self, msg: PendingMessage, exc: UpstreamError) -> bool:
        """A 400 for one SMS. True when it was parked (shipping goes on)."""
        code = exc.body.strip()
        if code == "NO_NUMBER" and self._listed is not None and msg.number not in self._listed():
            # Withdrawn while we were sending: wait for the number to be listed again.
            await self._journal.hold([msg.id], UNLISTED)
            return True
        if code == "NO_NUMBER":
            seen = self._no_number.get(msg.id, 0) + 1
            self._no_number[msg.id] = seen
            if seen < NO_NUMBER_ATTEMPTS:
                if self._republish is not None:
                    self._republish()
                return False
        self._no_number.pop(msg.id, None)
        reason = f"refused by upstream: HTTP 400 {code[:200]}"
        await self._journal.park([msg.id], reason)
        LOGGER.error("message %d to %s parked: %s", msg.id, mask_number(msg.number), reason)
        if self._on_parked is not None:
            self._on_parked(msg, reason)
        return True

    def _failed(self, started: float, exc: UpstreamError) -> float:
        self.last_error = str(exc)
        if exc.status in AUTH_FAILED:
            if not self.auth_failed:
                LOGGER.error("upstream refuses our credentials: %s", exc)
            self.auth_failed = True
            retry_after = max(AUTH_RETRY, exc.retry_after or 0.0)
            return self.loop.failed(started, exc, retry_after)
        return self.loop.failed(started, exc, exc.retry_after)

    async def _delivered(self, batch: list[PendingMessage]) -> None:
        now = self._clock()
        ids = [m.id for m in batch]
        try:
            await self._journal.mark_delivered(ids, now)
        except JournalError:
            self._unrecorded.extend(batch)
            raise
        for m in batch:
            self._no_number.pop(m.id, None)
        if self._on_delivered is not None:
            self._on_delivered(batch, now)
