"""Reads of the journal on a connection and thread of their own, read-only.

The status API's counts used to run in the writer's group-commit queue, so every port's next
part waited behind them. Here they run on a second connection opened ``mode=ro``: in WAL mode
a reader works on the last committed snapshot, never blocks a commit and never waits for one.

The counts themselves are not counted: the ``state_counts`` table holds the rows of ``parts``
and ``messages`` per state, kept by triggers in the transaction that changes a row (whatever
process writes it), so one read costs a few rows however large the journal grows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from muxd.errors import JournalError
from muxd.store.writer import WriterThread

# How long a read waits when SQLite is busy (a WAL recovery after a crash, a checkpoint that
# resets the log): a status answer late by this much beats an error page.
READ_BUSY_TIMEOUT_MS = 2000

_COUNTS = "SELECT tbl, state, n FROM state_counts WHERE n != 0"


def read_only_uri(path: Path) -> str:
    """An SQLite URI opening ``path`` read-only (characters such as ``?`` and ``#`` quoted)."""
    return path.resolve().as_uri() + "?mode=ro"


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per state as ``messages_<state>`` and ``parts_<state>``; states with none left out."""
    return {f"{tbl}_{state}": int(n) for tbl, state, n in conn.execute(_COUNTS).fetchall()}


class Reads:
    """A read-only connection on its own thread. Open with :meth:`open`; close with
    :meth:`close`. Opened after the writer has created and migrated the journal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = WriterThread("journal-reads")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> Reads:
        reads = cls(path)
        try:
            await reads._thread.call(reads._connect)
        except (OSError, sqlite3.Error) as exc:
            reads._thread.stop(wait=False)
            raise JournalError(f"{path}: cannot open the journal for reading: {exc}") from exc
        return reads

    def _connect(self) -> None:
        conn = sqlite3.connect(
            read_only_uri(self.path), uri=True, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            counts(conn)  # the table exists (the journal is migrated) and the file is readable
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._thread.call(conn.close)
        self._thread.stop()

    async def stats(self) -> dict[str, int]:
        """Rows of parts and messages per state, as of the last commit."""
        if self._conn is None:
            raise JournalError(f"{self.path}: the journal is closed")
        try:
            return await self._thread.call(self._stats)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: read failed: {exc}") from exc

    def _stats(self) -> dict[str, int]:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the journal's read connection is closed")
        return counts(self._conn)
