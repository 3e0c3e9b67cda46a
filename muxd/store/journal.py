"""The SQLite journal: raw parts, reassembled messages, delivery state, published numbers.

One connection, used from one worker thread, so the event loop never blocks on a disk. Every
operation goes through the group-commit engine (:mod:`muxd.store.commit`): operations queued
while a commit is running share the next transaction. ``synchronous=FULL`` makes a commit
durable before :meth:`Journal.put_part` returns, which is what allows the caller to delete the
part from the modem afterwards.

Two writes of the delivery path are *deferred* (they ride in the next transaction and are
committed within ``DEFERRED_WITHIN``, 50 ms, of being queued): the attempt count
:meth:`Journal.take_batch` records and the delivered mark of :meth:`Journal.mark_delivered`.
Neither gates anything irreversible on our side, so neither pays an fsync of its own; under load
both ride in the transactions of incoming parts. Because operations run in queue order, a
``take_batch`` queued after a ``mark_delivered`` never returns the messages it marked.

What a kill -9 can now cost: an SMS acknowledged by the upstream within the last
``DEFERRED_WITHIN`` before the crash is still pending after the restart and is sent again (the
delivery is at least once anyway: v2 has no idempotency key), and its attempt count may be one
short. Nothing is lost: parts are committed before they leave the modem, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from muxd.errors import JournalError
from muxd.store.clock import StoreClock
from muxd.store.commit import GroupCommit
from muxd.store.deny import judge
from muxd.store.intake import (
    DecodedCache,
    PartIn,
    PendingMessage,
    PutResult,
    classify,
    put_part_op,
    release_op,
)
from muxd.store.reads import Reads
from muxd.store.schema import adopt_clock, migrate
from muxd.store.states import BACKLOG, SETTLED, MessageState, PartState, in_states, move
from muxd.store.writer import WriterThread

if TYPE_CHECKING:
    from muxd.deny import DenyList

LOGGER = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
WRITE_PROBE = ".muxd-write-probe"
# How long a writer waits on a lock held by another process (e.g. `muxd outbox` run by hand).
BUSY_TIMEOUT_MS = 5000
# Status counts wait this long at most for the writes queued before them to commit.
STATS_WAIT = 0.5

T = TypeVar("T")


class PublishedNumber(msgspec.Struct, frozen=True):
    """What the upstream was last told of one number."""

    number: str
    entry: str | None  # the list entry as JSON (None: never listed, an id only)
    onlinesim_id: int | None  # the upstream's id for it, where it gave one


M = MessageState
UNLISTED = "number not listed upstream"  # why an SMS is held

_PENDING_ROWS = (
    "SELECT id, number, sender, text, sms_time, received_at FROM messages"
    f" WHERE {in_states(M.PENDING)} AND number IS NOT NULL ORDER BY id LIMIT ?"
)
_HOLD = move(M.HELD, from_={M.PENDING}, sets="last_error = ?")
_ATTEMPTED = f"UPDATE messages SET attempts = attempts + 1 WHERE id = ? AND {in_states(M.PENDING)}"
_DELIVERED = move(M.DELIVERED, sets="delivered_at = ?")
_PARK = move(M.PARKED, from_={M.PENDING}, sets="last_error = ?")
_RELEASE_HELD = move(M.PENDING, from_={M.HELD}, where="number = ?")
_PARK_HELD = move(M.PARKED, from_={M.HELD}, sets="last_error = ?", where="seen_mono <= ?")
_COUNT_BACKLOG = f"SELECT count(*) FROM messages WHERE {in_states(*BACKLOG)}"


class _Carried:
    """A failed deferred write and what to do with its result once it is committed."""

    __slots__ = ("op", "then")

    def __init__(
        self, op: Callable[[sqlite3.Connection], int], then: Callable[[int], None] | None
    ) -> None:
        self.op = op
        self.then = then


class _Recount:
    """A backlog recount in flight: what delivered marks queued after its read moved the
    in-memory backlog meanwhile (the read does not see them)."""

    __slots__ = ("first", "moved")

    def __init__(self, first: int) -> None:
        self.first = first  # the first mark queued after the read
        self.moved = 0


def _nothing(conn: sqlite3.Connection) -> None:
    """An operation that writes nothing: awaiting it waits for everything queued before it."""


def _pending_rows(conn: sqlite3.Connection, limit: int) -> list[PendingMessage]:
    rows = conn.execute(_PENDING_ROWS, (limit,)).fetchall()
    return [PendingMessage(*r) for r in rows]


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _hold_rows(conn: sqlite3.Connection, ids: list[int], reason: str) -> None:
    conn.executemany(_HOLD, [(reason[:500], i) for i in ids])


def _take(
    conn: sqlite3.Connection, limit: int, listed: AbstractSet[str] | None
) -> tuple[list[PendingMessage], int]:
    """The oldest ``limit`` pending messages, less those of numbers not ``listed`` (held), and
    how many were looked at."""
    looked_at = batch = _pending_rows(conn, limit)
    if listed is not None:
        _hold_rows(conn, [m.id for m in batch if m.number not in listed], UNLISTED)
        batch = [m for m in batch if m.number in listed]
    return batch, len(looked_at)


class Journal:
    """Durable store behind one interface. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        *,
        on_commit: Callable[[float, int], None] | None = None,
        clock: StoreClock | None = None,
        deny: DenyList | None = None,
        on_denied: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.path = path
        # The deny-list judged where messages are created; on_denied(rule) once per message.
        self.deny = deny
        self._on_denied = on_denied
        self.clock = clock or StoreClock()
        self._writer = WriterThread("journal")
        self._conn: sqlite3.Connection | None = None
        # Decoded waiting parts, so a set's parts are not decoded again on each arrival
        # (touched only in the writer thread).
        self._decoded: DecodedCache = {}
        self._commits = GroupCommit(
            self._writer,
            lambda: self._conn,
            path=path,
            on_commit=on_commit,
            on_failure=self._on_failure,
            sleep=sleep,
        )
        self._reads: Reads | None = None  # the status API's read-only connection
        self.new_messages = asyncio.Event()
        self.broken = asyncio.Event()  # set while writes fail (intake must stop)
        self._healthy = asyncio.Event()
        self._healthy.set()
        self.backlog = 0  # messages not yet delivered (kept in memory, exact)
        # Deferred writes of the delivery path that failed: redone first, in the next
        # take_batch's own operation, which fails while they do (so the shipper waits with its
        # floor, and never re-sends a message whose delivered mark is not recorded).
        self._carried: list[_Carried] = []
        # Delivered marks are numbered as they are queued; recounts in flight, each with the
        # backlog moves of the marks queued after its read (it must not undo them).
        self._marks = 0
        self._recounts: list[_Recount] = []

    @property
    def failed(self) -> JournalError | None:
        """Why writes fail (None while the journal is healthy)."""
        return self._commits.failed

    @failed.setter
    def failed(self, value: JournalError | None) -> None:
        self._commits.failed = value

    def _on_failure(self, err: JournalError) -> None:
        self.broken.set()
        self._healthy.clear()

    @classmethod
    async def open(cls, state_dir: Path, **kwargs: Any) -> Journal:
        journal = cls(state_dir / JOURNAL_FILE, **kwargs)
        try:
            await journal._writer.call(journal._connect)
        except (OSError, sqlite3.Error) as exc:
            journal._writer.stop(wait=False)
            raise JournalError(f"{journal.path}: cannot open journal: {exc}") from exc
        try:
            journal._reads = await Reads.open(journal.path)
        except JournalError:
            await journal.close()
            raise
        return journal

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite says only "unable to open database file"; the OS says why (a read-only mount,
        # a full disk, permissions).
        probe = self.path.parent / WRITE_PROBE
        probe.write_bytes(b"muxd")
        probe.unlink()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        migrate(conn)
        adopt_clock(conn, self.clock.epoch, self.clock.monotonic())
        (self.backlog,) = conn.execute(_COUNT_BACKLOG).fetchone()
        self._conn = conn

    async def close(self) -> None:
        await self._commits.close()
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        if self._conn is not None:
            await self._writer.call(self._conn.close)
            self._conn = None
        self._writer.stop()

    @property
    def transactions(self) -> int:
        """Transactions run so far (each one hand-off to the writer thread)."""
        return self._commits.transactions

    @property
    def riding(self) -> int:
        """Takes waiting to ride in the next transaction (an idle shipper's)."""
        return self._commits.riding()

    async def _submit(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self._commits.submit(op)

    async def flush(self) -> None:
        """Commit every operation queued so far, deferred writes included."""
        await self._commits.flush()

    async def wait_healthy(self) -> None:
        """Return once the journal accepts writes (at once unless a commit failed)."""
        await self._healthy.wait()

    async def probe(self) -> bool:
        """Try one durable write; on success clear the failed state (intake may resume)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO health(id, at) VALUES (1, ?)", (time.time(),))

        if not await self._commits.probe(op):
            return False
        self.broken.clear()
        self._healthy.set()
        return True

    async def execute(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op(conn)`` in the writer thread, inside the next group-commit transaction.

        For modules that keep their own tables in the journal (v1 operations, pushes). ``op``
        must be quick, must not commit and must touch nothing but ``conn`` (when another
        operation of its batch fails, the batch is rolled back and run again); an exception it
        raises rolls back only its own work (a savepoint) and is raised here as JournalError.
        """
        return await self._submit(op)

    # -- intake -------------------------------------------------------------------------------

    async def put_part(self, part: PartIn) -> PutResult:
        """Durably store one part. When this returns, the part may be deleted from the modem."""
        # Decoded here, before the transaction that gates the delete from the modem.
        store = put_part_op(part, self.clock.monotonic(), classify(part), self._decoded)
        deny = self.deny

        def op(conn: sqlite3.Connection) -> PutResult:
            result = store(conn)
            if not result.new:
                return result
            made = [*result.released, *([result.message_id] if result.message_id else [])]
            denied = judge(conn, deny, made)
            return msgspec.structs.replace(result, denied=tuple(denied)) if denied else result

        result = await self._submit(op)
        added = len(result.released) + (result.message_id is not None and result.new)
        added -= len(result.denied)
        self._count_denied(result.denied)
        if added:
            self.backlog += added
            self._announce()
        return result

    # -- shipping -----------------------------------------------------------------------------

    async def pending(self, limit: int) -> list[PendingMessage]:
        """The oldest undelivered messages that have a receiving number, in arrival order."""

        return await self._submit(lambda conn: _pending_rows(conn, limit))

    async def take_batch(
        self, limit: int, listed: AbstractSet[str] | None = None
    ) -> tuple[list[PendingMessage], int]:
        """The next batch to send, in one transaction: the oldest ``limit`` pending messages;
        those whose number is not in ``listed`` (when given) are held, the rest are recorded as
        attempted and returned. Also returns how many were looked at: fewer than ``limit``
        means nothing else was pending. After a crash, a pending message with attempts > 0 may
        have reached the upstream already: it is sent again (at least once; v2 has no
        idempotency key), and the count shows it (the count is a deferred write: after a kill -9
        it may be one short for messages sent within the last ``DEFERRED_WITHIN``)."""

        carried, self._carried = self._carried, []

        def op(conn: sqlite3.Connection) -> tuple[list[PendingMessage], int, list[int]]:
            redone = [c.op(conn) for c in carried]
            return (*_take(conn, limit, listed), redone)

        try:
            batch, looked_at, redone = await self._submit(op)
        except BaseException:
            self._carried[:0] = carried
            raise
        if carried:
            LOGGER.info("journal: deferred writes recorded again")
            for c, result in zip(carried, redone, strict=True):
                if c.then is not None:
                    c.then(result)
        return self._taken(batch, looked_at)

    def _taken(
        self, batch: list[PendingMessage], looked_at: int
    ) -> tuple[list[PendingMessage], int]:
        """A take's result, once committed: refused if a deferred write of its transaction
        failed; otherwise the attempt is recorded (deferred)."""
        if self._carried:
            # A deferred write of this very transaction failed (it was queued before this
            # read): the batch may hold a message whose delivered mark was undone.
            raise JournalError(f"{self.path}: a deferred write failed; it is redone first")
        if batch:
            ids = [(m.id,) for m in batch]
            self._defer(lambda conn: conn.executemany(_ATTEMPTED, ids).rowcount)
        return batch, looked_at

    async def take_riding(
        self,
        limit: int,
        listed: Callable[[], AbstractSet[str]] | None = None,
        *,
        deadline: float | None = None,
    ) -> tuple[list[PendingMessage], int]:
        """:meth:`take_batch`, run at the end of the next transaction anyone starts (the one
        that stores the next SMS, typically) rather than in one of its own: for a shipper with
        nothing to send, waiting for the next SMS. ``listed`` is read when that transaction is
        formed. A new message announced while it waits (its transaction committed before this
        came) starts a transaction for it. Cancel it to stop waiting; at ``deadline`` (the
        loop's clock) with no transaction formed, it stops waiting and raises TimeoutError."""
        if self._carried:
            # Failed deferred writes are redone first, in a transaction of take_batch's own.
            return await self.take_batch(limit, listed() if listed is not None else None)

        def make() -> Callable[[sqlite3.Connection], tuple[list[PendingMessage], int]]:
            numbers = listed() if listed is not None else None
            return lambda conn: _take(conn, limit, numbers)

        ride = self._commits.ride(make)
        if deadline is None:
            return self._taken(*await ride)
        # A timer, not asyncio.timeout: this wait is one per SMS at low load. A ride done
        # (even with an exception) is withdrawn: no transaction takes it after this.
        expiry = asyncio.get_running_loop().call_at(deadline, _expire, ride)
        try:
            return self._taken(*await ride)
        finally:
            expiry.cancel()

    def _announce(self) -> None:
        """New messages are committed: wake the shipper, and run the take waiting to ride."""
        self.new_messages.set()
        self._commits.kick()

    def _defer(
        self, op: Callable[[sqlite3.Connection], int], then: Callable[[int], None] | None = None
    ) -> None:
        def failed(exc: BaseException) -> None:
            if not self._carried:  # one line per state change, not per failed write
                LOGGER.warning(
                    "journal: a deferred write failed, redone with the next batch: %s", exc
                )
            self._carried.append(_Carried(op, then))

        self._commits.defer(op, then, failed)

    async def mark_delivered(self, ids: list[int], when: float) -> None:
        """Record messages as delivered: a deferred write, committed within
        ``DEFERRED_WITHIN`` or with the next transaction; operations queued after it (the next
        :meth:`take_batch`) see it. The backlog counts them out at once (they came from
        :meth:`take_batch`, so they were pending) and is corrected by what the write changed
        once it is committed (an operator parked one meanwhile)."""
        rows = [(when, i) for i in ids]
        expected = len(ids)
        mark = self._marks

        def counted(changed: int) -> None:
            self._move_backlog(mark, expected - changed)

        self._defer(lambda conn: conn.executemany(_DELIVERED, rows).rowcount, counted)
        self._marks += 1
        self._move_backlog(mark, -expected)

    def _move_backlog(self, mark: int, by: int) -> None:
        """Move the backlog for delivered mark number ``mark`` (queued, or committed)."""
        self.backlog += by
        for recount in self._recounts:
            if mark >= recount.first:
                recount.moved += by

    async def park(self, ids: list[int], reason: str) -> None:
        """Take messages out of the delivery queue, keeping them (visible, replayable)."""

        rows = [(reason[:500], i) for i in ids]
        self.backlog -= await self._submit(lambda conn: conn.executemany(_PARK, rows).rowcount)

    async def hold(self, ids: list[int], reason: str) -> None:
        """Set messages aside until their number is listed upstream again (still backlog)."""

        await self._submit(lambda conn: _hold_rows(conn, ids, reason))

    async def release_held(self, numbers: list[str]) -> int:
        """Queue held messages of these (now listed) numbers again."""

        rows = [(n,) for n in numbers]
        released = await self._submit(lambda conn: conn.executemany(_RELEASE_HELD, rows).rowcount)
        if released:
            self._announce()
        return released

    async def park_held(self, max_age: float, reason: str) -> int:
        """Park messages still held (number never listed again) first seen ``max_age`` seconds
        ago or more, by the monotonic clock."""
        seen_before = self.clock.monotonic() - max_age

        args = (reason, seen_before)
        parked = await self._submit(lambda conn: conn.execute(_PARK_HELD, args).rowcount)
        self.backlog -= parked
        return parked

    async def release_incomplete(self, max_age: float) -> int:
        """Deliver sets still missing parts ``max_age`` seconds (the reassembly timeout, by the
        monotonic clock) after their first part was seen, flagged incomplete."""
        now = self.clock.monotonic()
        release = release_op(now - max_age, now, self._decoded)
        deny = self.deny

        def op(conn: sqlite3.Connection) -> tuple[list[int], list[str]]:
            ids = release(conn)
            return ids, judge(conn, deny, ids)

        released, denied = await self._submit(op)
        self._count_denied(denied)
        if len(released) > len(denied):
            self.backlog += len(released) - len(denied)
            self._announce()
        return len(released)

    def _count_denied(self, rules: tuple[str, ...] | list[str]) -> None:
        if self._on_denied is not None:
            for rule in rules:
                self._on_denied(rule)

    async def prune(self, older_than: float) -> int:
        """Delete delivered messages (and their parts) delivered before ``older_than`` (wall
        time: the retention of stored records), and parts parked before it."""

        def op(conn: sqlite3.Connection) -> int:
            done = (
                f"({in_states(M.DELIVERED)} AND delivered_at < ?1)"
                f" OR ({in_states(*SETTLED)} AND received_at < ?1)"
            )
            conn.execute(
                f"DELETE FROM parts WHERE message_id IN (SELECT id FROM messages WHERE {done})",
                (older_than,),
            )
            cur = conn.execute(f"DELETE FROM messages WHERE {done}", (older_than,))
            # Status reports, stored SUBMITs and parked parts are kept for the same retention.
            conn.execute(
                "DELETE FROM parts WHERE"
                f" {in_states(PartState.STATUS_REPORT, PartState.SUBMIT, PartState.PARKED)}"
                " AND received_at < ?",
                (older_than,),
            )
            return cur.rowcount

        return await self._submit(op)

    async def recount(self) -> None:
        """Re-read the backlog (operators may replay or park messages from another process)."""

        def op(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(_COUNT_BACKLOG).fetchone()
            return int(n)

        # Delivered marks queued after the read (the backlog counted them out when queued,
        # the read still counts them in) keep their effect.
        recount = _Recount(self._marks)
        self._recounts.append(recount)
        try:
            counted = await self._submit(op)
        finally:
            self._recounts.remove(recount)
        self.backlog = counted + recount.moved

    async def remember_numbers(self, rows: list[PublishedNumber], when: float) -> None:
        """Upsert published numbers (an id of None keeps the id known before)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO numbers(number, entry, onlinesim_id, published_at) VALUES (?,?,?,?)"
                " ON CONFLICT(number) DO UPDATE SET entry = excluded.entry,"
                " onlinesim_id = coalesce(excluded.onlinesim_id, numbers.onlinesim_id),"
                " published_at = excluded.published_at",
                [(r.number, r.entry, r.onlinesim_id, when) for r in rows],
            )

        await self._submit(op)

    async def forget_numbers(self, numbers: list[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM numbers WHERE number = ?", [(n,) for n in numbers])

        await self._submit(op)

    async def published_numbers(self) -> dict[str, PublishedNumber]:
        """What the upstream was last told, by number."""

        def op(conn: sqlite3.Connection) -> dict[str, PublishedNumber]:
            return {
                n: PublishedNumber(n, e, i)
                for n, e, i in conn.execute("SELECT number, entry, onlinesim_id FROM numbers")
            }

        return await self._submit(op)

    async def stats(self) -> dict[str, int]:
        """Rows of messages and parts per state (``messages_<state>``, ``parts_<state>``; a
        state with none is left out), as of the last commit. Read on the journal's read-only
        connection from counts the schema's triggers keep: it neither waits for the writer nor
        holds it up, and stays a few rows whatever the journal's size; it answers while a
        commit is failing too."""
        if self._reads is None:
            raise JournalError(f"{self.path}: the journal is closed")
        if self.failed is None and self._commits.busy():
            # Writes queued so far (a deferred delivered mark) are committed first, so the
            # counts include everything this process has recorded: an empty operation queued
            # behind them (FIFO) returns once they are committed, the commit in progress and the
            # next one, however busy intake is; never a query inside the writer. Waited for
            # STATS_WAIT at most (another process holding the write lock, a slow disk): then
            # the counts are those last committed. A failing journal answers with what it holds.
            with contextlib.suppress(JournalError, TimeoutError):
                async with asyncio.timeout(STATS_WAIT):
                    await self._submit(_nothing)
        return await self._reads.stats()
