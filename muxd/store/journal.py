"""The SQLite journal: raw parts, reassembled messages, delivery state, published numbers.

One connection, used from one worker thread, so the event loop never blocks on a disk. Every
write goes through :meth:`Journal._submit`: callers queue an operation and await its result;
operations queued while a commit is running share the next transaction (group commit), so
hundreds of parts per second cost a few fsyncs per second. ``synchronous=FULL`` makes a commit
durable before :meth:`put_part` returns, which is what allows the caller to delete the part from
the modem afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from muxd.errors import JournalError
from muxd.store.clock import StoreClock
from muxd.store.deny import judge
from muxd.store.intake import PartIn, PendingMessage, PutResult, put_part_op, release_op
from muxd.store.reads import Reads
from muxd.store.schema import adopt_clock, migrate
from muxd.store.writer import WriterThread

if TYPE_CHECKING:
    from muxd.deny import DenyList

LOGGER = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
WRITE_PROBE = ".muxd-write-probe"
# How long a writer waits on a lock held by another process (e.g. `muxd outbox` run by hand).
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


# SQLite result codes meaning the storage itself failed: the whole batch fails and intake stops.
_STORAGE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CORRUPT",
                   "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL")  # fmt: skip


def _storage_failure(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_STORAGE_ERRORS) or (
        isinstance(exc, sqlite3.DatabaseError) and ("disk" in str(exc) or "readonly" in str(exc))
    )


UNLISTED = "number not listed upstream"  # why an SMS is held


def _pending_rows(conn: sqlite3.Connection, limit: int) -> list[PendingMessage]:
    rows = conn.execute(
        "SELECT id, number, sender, text, sms_time, received_at FROM messages"
        " WHERE state = 'pending' AND number IS NOT NULL ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    return [PendingMessage(*r) for r in rows]


def _hold_rows(conn: sqlite3.Connection, ids: list[int], reason: str) -> None:
    conn.executemany(
        "UPDATE messages SET state = 'held', last_error = ? WHERE id = ? AND state = 'pending'",
        [(reason[:500], i) for i in ids],
    )


class _OperationFailed(Exception):
    """An operation of a batch raised (not a storage failure): the batch is run again."""


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
    ) -> None:
        self.path = path
        # The deny-list judged where messages are created; on_denied(rule) once per message.
        self.deny = deny
        self._on_denied = on_denied
        self._on_commit = on_commit
        self.clock = clock or StoreClock()
        self._writer = WriterThread("journal")
        self._conn: sqlite3.Connection | None = None
        self._reads: Reads | None = None  # the status API's read-only connection
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self.new_messages = asyncio.Event()
        self.failed: JournalError | None = None
        self.broken = asyncio.Event()  # set while writes fail (intake must stop)
        self._healthy = asyncio.Event()
        self._healthy.set()
        self.backlog = 0  # messages not yet delivered (kept in memory, exact)

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
        (self.backlog,) = conn.execute(
            "SELECT count(*) FROM messages WHERE state IN ('pending', 'held')"
        ).fetchone()
        self._conn = conn

    async def close(self) -> None:
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        if self._conn is not None:
            await self._writer.call(self._conn.close)
            self._conn = None
        self._writer.stop()

    # -- group commit -------------------------------------------------------------------------

    async def _submit(self, op: Op) -> Any:
        if self.failed is not None:
            raise self.failed
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, fut))
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_loop(), name="journal-commit")
        # A cancelled caller does not cancel the commit: the batch is shared.
        return await fut

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                ops = [op for op, _ in batch]
                started = time.perf_counter()
                try:
                    results = await self._writer.call(self._run_batch, ops)
                except (OSError, sqlite3.Error) as exc:
                    err = JournalError(f"{self.path}: commit failed: {exc}")
                    LOGGER.critical("%s", err)
                    self.failed = err
                    self.broken.set()
                    self._healthy.clear()
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                if self._on_commit is not None:
                    self._on_commit(time.perf_counter() - started, len(ops))
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._flush_task = None

    def _run_batch(self, ops: list[Op]) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise sqlite3.ProgrammingError("journal is closed")
        try:
            return self._transaction(conn, ops, isolate=False)
        except _OperationFailed:
            # One operation failed on its own (a constraint, a bug): run the batch again with
            # each operation in a savepoint, so that only the failing one's work is undone.
            return self._transaction(conn, ops, isolate=True)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, ops: list[Op], *, isolate: bool) -> list[Any]:
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                if isolate:
                    conn.execute("SAVEPOINT op")
                try:
                    results.append(op(conn))
                except Exception as exc:
                    if isinstance(exc, sqlite3.Error) and _storage_failure(exc):
                        raise
                    if not isolate:
                        raise _OperationFailed from exc
                    conn.execute("ROLLBACK TO op")
                    results.append(JournalError(f"journal operation failed: {exc}"))
                if isolate:
                    conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return results

    async def wait_healthy(self) -> None:
        """Return once the journal accepts writes (at once unless a commit failed)."""
        await self._healthy.wait()

    async def probe(self) -> bool:
        """Try one durable write; on success clear the failed state (intake may resume)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO health(id, at) VALUES (1, ?)", (time.time(),))

        ops: list[Op] = [op]
        try:
            await self._writer.call(self._run_batch, ops)
        except (OSError, sqlite3.Error) as exc:
            LOGGER.debug("journal probe failed: %s", exc)
            return False
        self.failed = None
        self.broken.clear()
        self._healthy.set()
        return True

    async def execute(self, op: Op) -> Any:
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
        store = put_part_op(part, self.clock.monotonic())
        deny = self.deny

        def op(conn: sqlite3.Connection) -> PutResult:
            result = store(conn)
            if not result.new:
                return result
            made = [*result.released, *([result.message_id] if result.message_id else [])]
            denied = judge(conn, deny, made)
            return msgspec.structs.replace(result, denied=tuple(denied)) if denied else result

        result: PutResult = await self._submit(op)
        added = len(result.released) + (result.message_id is not None and result.new)
        added -= len(result.denied)
        self._count_denied(result.denied)
        if added:
            self.backlog += added
            self.new_messages.set()
        return result

    # -- shipping -----------------------------------------------------------------------------

    async def pending(self, limit: int) -> list[PendingMessage]:
        """The oldest undelivered messages that have a receiving number, in arrival order."""

        result: list[PendingMessage] = await self._submit(lambda conn: _pending_rows(conn, limit))
        return result

    async def take_batch(
        self, limit: int, listed: AbstractSet[str] | None = None
    ) -> tuple[list[PendingMessage], int]:
        """The next batch to send, in one transaction: the oldest ``limit`` pending messages;
        those whose number is not in ``listed`` (when given) are held, the rest are recorded as
        attempted and returned. Also returns how many were looked at: fewer than ``limit``
        means nothing else was pending. After a crash, a pending message with attempts > 0 may
        have reached the upstream already: it is sent again (at least once; v2 has no
        idempotency key), and the count shows it."""

        def op(conn: sqlite3.Connection) -> tuple[list[PendingMessage], int]:
            looked_at = batch = _pending_rows(conn, limit)
            if listed is not None:
                _hold_rows(conn, [m.id for m in batch if m.number not in listed], UNLISTED)
                batch = [m for m in batch if m.number in listed]
            conn.executemany(
                "UPDATE messages SET attempts = attempts + 1 WHERE id = ?", [(m.id,) for m in batch]
            )
            return batch, len(looked_at)

        result: tuple[list[PendingMessage], int] = await self._submit(op)
        return result

    async def mark_delivered(self, ids: list[int], when: float) -> None:
        def op(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE messages SET state = 'delivered', delivered_at = ?"
                " WHERE id = ? AND state = 'pending'",
                [(when, i) for i in ids],
            )
            return cur.rowcount

        changed: int = await self._submit(op)
        self.backlog -= changed

    async def park(self, ids: list[int], reason: str) -> None:
        """Take messages out of the delivery queue, keeping them (visible, replayable)."""

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE messages SET state = 'parked', last_error = ? WHERE id = ?"
                " AND state = 'pending'",
                [(reason[:500], i) for i in ids],
            )
            return cur.rowcount

        changed: int = await self._submit(op)
        self.backlog -= changed

    async def hold(self, ids: list[int], reason: str) -> None:
        """Set messages aside until their number is listed upstream again (still backlog)."""

        await self._submit(lambda conn: _hold_rows(conn, ids, reason))

    async def release_held(self, numbers: list[str]) -> int:
        """Queue held messages of these (now listed) numbers again."""

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE messages SET state = 'pending' WHERE state = 'held' AND number = ?",
                [(n,) for n in numbers],
            )
            return cur.rowcount

        released: int = await self._submit(op)
        if released:
            self.new_messages.set()
        return released

    async def park_held(self, max_age: float, reason: str) -> int:
        """Park messages still held (number never listed again) first seen ``max_age`` seconds
        ago or more, by the monotonic clock."""
        seen_before = self.clock.monotonic() - max_age

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE messages SET state = 'parked', last_error = ?"
                " WHERE state = 'held' AND seen_mono <= ?",
                (reason, seen_before),
            )
            return cur.rowcount

        parked: int = await self._submit(op)
        self.backlog -= parked
        return parked

    async def release_incomplete(self, max_age: float) -> int:
        """Deliver sets still missing parts ``max_age`` seconds (the reassembly timeout, by the
        monotonic clock) after their first part was seen, flagged incomplete."""
        now = self.clock.monotonic()
        release = release_op(now - max_age, now)
        deny = self.deny

        def op(conn: sqlite3.Connection) -> tuple[list[int], list[str]]:
            ids = release(conn)
            return ids, judge(conn, deny, ids)

        released, denied = await self._submit(op)
        self._count_denied(denied)
        if len(released) > len(denied):
            self.backlog += len(released) - len(denied)
            self.new_messages.set()
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
                "(state = 'delivered' AND delivered_at < ?1) OR (state IN"
                " ('no_operation', 'filtered', 'rejected', 'denied') AND received_at < ?1)"
            )
            conn.execute(
                f"DELETE FROM parts WHERE message_id IN (SELECT id FROM messages WHERE {done})",
                (older_than,),
            )
            cur = conn.execute(f"DELETE FROM messages WHERE {done}", (older_than,))
            # Status reports, stored SUBMITs and parked parts are kept for the same retention.
            conn.execute(
                "DELETE FROM parts WHERE state IN ('status_report', 'submit', 'parked')"
                " AND received_at < ?",
                (older_than,),
            )
            return cur.rowcount

        pruned: int = await self._submit(op)
        return pruned

    async def recount(self) -> None:
        """Re-read the backlog (operators may replay or park messages from another process)."""

        def op(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(
                "SELECT count(*) FROM messages WHERE state IN ('pending', 'held')"
            ).fetchone()
            return int(n)

        self.backlog = await self._submit(op)

    async def remember_numbers(self, rows: list[tuple[str, str, int | None]], when: float) -> None:
        """Upsert published numbers: (number, entry as JSON, Onlinesim id)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO numbers(number, entry, onlinesim_id, published_at) VALUES (?,?,?,?)"
                " ON CONFLICT(number) DO UPDATE SET entry = excluded.entry,"
                " onlinesim_id = coalesce(excluded.onlinesim_id, numbers.onlinesim_id),"
                " published_at = excluded.published_at",
                [(number, entry, nid, when) for number, entry, nid in rows],
            )

        await self._submit(op)

    async def forget_numbers(self, numbers: list[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM numbers WHERE number = ?", [(n,) for n in numbers])

        await self._submit(op)

    async def published_numbers(self) -> dict[str, tuple[str | None, int | None]]:
        """What the upstream was last told: number -> (entry JSON, Onlinesim id)."""

        def op(conn: sqlite3.Connection) -> dict[str, tuple[str | None, int | None]]:
            return {
                n: (e, i)
                for n, e, i in conn.execute("SELECT number, entry, onlinesim_id FROM numbers")
            }

        result: dict[str, tuple[str | None, int | None]] = await self._submit(op)
        return result

    async def stats(self) -> dict[str, int]:
        """Rows of messages and parts per state (``messages_<state>``, ``parts_<state>``; a
        state with none is left out), as of the last commit. Read on the journal's read-only
        connection from counts the schema's triggers keep: it neither waits for the writer nor
        holds it up, and stays a few rows whatever the journal's size; it answers while a
        commit is failing too."""
        if self._reads is None:
            raise JournalError(f"{self.path}: the journal is closed")
        return await self._reads.stats()
