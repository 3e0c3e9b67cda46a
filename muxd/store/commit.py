"""Group commit: many small SQLite operations, few transactions, one writer thread.

Callers queue an operation (a function of the connection) and await its result; operations
queued while a transaction is running share the next one, so hundreds of parts per second cost
a few fsyncs per second. Operations run in queue order (FIFO), so a later read sees every
earlier write, whether submitted or deferred.

A *deferred* write (:meth:`GroupCommit.defer`) does not start a transaction of its own: it
rides in the next one any caller starts, and at the latest :data:`DEFERRED_WITHIN` after it was
queued a transaction is started for it. Nobody awaits it; an optional callback receives its
result once it is committed. A transaction that takes the queue takes the deferred writes with
it, and their timer with them: the next deferred write gets a full :data:`DEFERRED_WITHIN` of
its own (under a steady trickle of SMS, the delivered mark of one rides in the next one's
transaction instead of forcing a commit every DEFERRED_WITHIN). A kill -9 loses the deferred
writes not yet committed: at most those queued within the last :data:`DEFERRED_WITHIN`.

A *rider* (:meth:`GroupCommit.ride`) is a read that waits for the next transaction anyone
starts and runs at its end, seeing what that transaction wrote: the shipper, idle, takes its
next batch that way, in the very transaction that stores the SMS, instead of asking the writer
thread again once it has. :meth:`GroupCommit.kick` starts a transaction for the waiting riders
(something they must see was committed before they came).

When one operation of a batch raises (a constraint, a bug), the batch is rolled back and run
again with each operation in a savepoint, so only the failing one's work is undone and only its
caller sees the error. A storage failure (full disk, I/O error) fails the whole batch and is
reported through ``on_failure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from muxd.errors import JournalError
from muxd.store.writer import WriterThread

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

# The longest a deferred write waits for a transaction to ride in before one is started for it.
# It bounds what a crash can undo of a deferred write (a delivered mark, an attempt count): an
# SMS acknowledged upstream within this window before a kill -9 is sent again after restart.
# Under load every put_part starts a transaction well within it, so it rarely fires.
DEFERRED_WITHIN = 0.05

# SQLite result codes meaning the storage itself failed: the whole batch fails and intake stops.
_STORAGE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CORRUPT",
                   "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL")  # fmt: skip


def storage_failure(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_STORAGE_ERRORS) or (
        isinstance(exc, sqlite3.DatabaseError) and ("disk" in str(exc) or "readonly" in str(exc))
    )


class _OperationFailed(Exception):
    """An operation of a batch raised (not a storage failure): the batch is run again."""


class _Entry(Generic[T]):
    """One queued operation: awaited through ``fut``, or deferred (``fut`` None)."""

    __slots__ = ("fut", "op", "or_else", "then")

    def __init__(
        self,
        op: Callable[[sqlite3.Connection], T],
        fut: asyncio.Future[T] | None,
        then: Callable[[T], None] | None = None,
        or_else: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.op = op
        self.fut = fut
        self.then = then
        self.or_else = or_else

    def settle(self, result: T | BaseException) -> None:
        if isinstance(result, BaseException):
            if self.fut is not None:
                if not self.fut.done():
                    self.fut.set_exception(result)
            elif self.or_else is not None:
                self.or_else(result)
            else:
                LOGGER.error("deferred journal write failed: %s", result)
            return
        if self.fut is not None:
            if not self.fut.done():
                self.fut.set_result(result)
        elif self.then is not None:
            try:
                self.then(result)
            except Exception:  # a callback's bug must not stop the commit loop
                LOGGER.exception("deferred journal write callback failed")


def run_transaction(
    conn: sqlite3.Connection, ops: list[Callable[[sqlite3.Connection], Any]], *, isolate: bool
) -> list[Any]:
    """Run ``ops`` in one transaction; with ``isolate``, each in a savepoint whose failure
    becomes its result (a JournalError) instead of failing the others."""
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            if isolate:
                conn.execute("SAVEPOINT op")
            try:
                results.append(op(conn))
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and storage_failure(exc):
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


def run_batch(
    conn: sqlite3.Connection | None, ops: list[Callable[[sqlite3.Connection], Any]]
) -> tuple[list[Any], bool]:
    """Run a batch (in the writer thread): its results, and whether it wrote anything."""
    if conn is None:
        raise sqlite3.ProgrammingError("journal is closed")
    before = conn.total_changes
    try:
        results = run_transaction(conn, ops, isolate=False)
    except _OperationFailed:
        results = run_transaction(conn, ops, isolate=True)
    return results, conn.total_changes != before


class GroupCommit:
    """The queue of operations in front of one connection and its writer thread."""

    def __init__(
        self,
        writer: WriterThread,
        conn: Callable[[], sqlite3.Connection | None],
        *,
        path: object,
        on_commit: Callable[[float, int], None] | None = None,
        on_failure: Callable[[JournalError], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._writer = writer
        self._conn = conn
        self._path = path
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._sleep = sleep
        self._queue: list[_Entry[Any]] = []
        self._awaited = 0  # entries in the queue somebody awaits (they start a transaction)
        self._due = False  # the deferred timer fired: commit even if nobody awaits
        self._flush_task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        # Riders waiting for a transaction: each builds its operation when one is formed.
        self._riders: list[
            tuple[Callable[[], Callable[[sqlite3.Connection], Any]], asyncio.Future[Any]]
        ] = []
        self._kicked = False  # the riders want a transaction of their own
        self.transactions = 0  # batches run in the writer thread, read-only ones included
        self.failed: JournalError | None = None

    async def submit(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op(conn)`` in the next transaction and return its result once committed."""
        if self.failed is not None:
            raise self.failed
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Entry(op, fut))
        self._awaited += 1
        self._start()
        # A cancelled caller does not cancel the commit: the batch is shared.
        return await fut

    def defer(
        self,
        op: Callable[[sqlite3.Connection], T],
        then: Callable[[T], None] | None = None,
        or_else: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Queue a write that rides in the next transaction (committed within
        DEFERRED_WITHIN); ``then(result)`` runs on the event loop once it is committed,
        ``or_else(error)`` if it fails (else the failure is logged)."""
        if self.failed is not None:
            raise self.failed
        self._queue.append(_Entry(op, None, then, or_else))
        if self._timer is None:
            self._timer = asyncio.create_task(self._deferred_timer(), name="journal-deferred")

    def ride(self, make: Callable[[], Callable[[sqlite3.Connection], T]]) -> asyncio.Future[T]:
        """Run an operation at the end of the next transaction anyone starts; ``make`` builds
        it, on the event loop, when that transaction is formed (so what it reads of the loop's
        state is current then). Nothing starts a transaction for it but :meth:`kick`; cancel
        the future to withdraw it."""
        if self.failed is not None:
            raise self.failed
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._riders.append((make, fut))
        return fut

    def riding(self) -> int:
        """Riders waiting for a transaction."""
        return sum(not fut.done() for _, fut in self._riders)

    def kick(self) -> None:
        """Start a transaction for the riders waiting, if any."""
        self._riders = [r for r in self._riders if not r[1].done()]
        if self._riders:
            self._kicked = True
            self._start()

    async def flush(self) -> None:
        """Commit everything queued so far (deferred writes included) and wait for it."""
        if self._queue:
            self._due = True
            self._start()
        while self._flush_task is not None:
            await asyncio.shield(self._flush_task)

    async def close(self) -> None:
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    def busy(self) -> bool:
        """Operations are queued or a transaction is running."""
        return bool(self._queue) or self._flush_task is not None

    def _start(self) -> None:
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_loop(), name="journal-commit")

    async def _deferred_timer(self) -> None:
        try:
            await self._sleep(DEFERRED_WITHIN)
        finally:
            if self._timer is asyncio.current_task():  # not a successor started meanwhile
                self._timer = None
        if self._queue:
            self._due = True
            self._start()

    async def _flush_loop(self) -> None:
        try:
            while (self._queue and (self._awaited or self._due)) or self._kicked:
                batch, self._queue = self._queue, []
                self._awaited = 0
                self._due = self._kicked = False
                if self._timer is not None:  # its deferred writes are in this batch
                    self._timer.cancel()
                    self._timer = None
                riders, self._riders = self._riders, []
                for make, fut in riders:
                    if fut.done():  # withdrawn
                        continue
                    try:
                        batch.append(_Entry(make(), fut))
                    except Exception as exc:  # noqa: BLE001 - handed to the rider's caller
                        fut.set_exception(exc)
                if batch:
                    await self._commit(batch)
        finally:
            self._flush_task = None

    async def _commit(self, batch: list[_Entry[Any]]) -> None:
        started = time.perf_counter()
        try:
            results, wrote = await self._writer.call(run_batch, self._conn(), [e.op for e in batch])
        except (OSError, sqlite3.Error) as exc:
            err = JournalError(f"{self._path}: commit failed: {exc}")
            LOGGER.critical("%s", err)
            self.failed = err
            if self._on_failure is not None:
                self._on_failure(err)
            for entry in batch:
                entry.settle(err)
            return
        self.transactions += 1
        # A read-only batch costs no fsync: only transactions that wrote are counted.
        if wrote and self._on_commit is not None:
            self._on_commit(time.perf_counter() - started, len(batch))
        for entry, result in zip(batch, results, strict=True):
            entry.settle(result)

    async def probe(self, op: Callable[[sqlite3.Connection], None]) -> bool:
        """Run one write outside the queue; on success clear the failed state."""
        try:
            await self._writer.call(run_batch, self._conn(), [op])
        except (OSError, sqlite3.Error) as exc:
            LOGGER.debug("journal probe failed: %s", exc)
            return False
        self.failed = None
        return True
