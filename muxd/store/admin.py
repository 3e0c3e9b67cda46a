"""Operator commands on the journal (``muxd outbox ...``), safe while the daemon runs.

They open the journal file with their own connection (WAL allows a reader and a short writer
beside the daemon). A running daemon notices replayed messages within its idle poll and
re-counts its backlog every minute.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from muxd.errors import JournalError
from muxd.store.journal import BUSY_TIMEOUT_MS, JOURNAL_FILE

PREVIEW = 40


@contextmanager
def _connect(state_dir: Path) -> Iterator[sqlite3.Connection]:
    path = state_dir / JOURNAL_FILE
    if not path.is_file():
        raise JournalError(f"{path}: no journal here (is state_dir right?)")
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: {exc}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: {exc}") from exc
    finally:
        conn.close()


def stats(state_dir: Path) -> dict[str, int | float | None]:
    with _connect(state_dir) as conn:
        out: dict[str, int | float | None] = {}
        for state in ("pending", "held", "delivered", "parked"):
            out[f"messages_{state}"] = 0
        for state, n in conn.execute("SELECT state, count(*) FROM messages GROUP BY state"):
            out[f"messages_{state}"] = n
        for state, n in conn.execute("SELECT state, count(*) FROM parts GROUP BY state"):
            out[f"parts_{state}"] = n
        (oldest,) = conn.execute(
            "SELECT min(received_at) FROM messages WHERE state = 'pending'"
        ).fetchone()
        out["oldest_pending_age_s"] = round(time.time() - oldest, 1) if oldest else None
        return out


def list_messages(state_dir: Path, *, state: str | None, limit: int) -> list[dict[str, object]]:
    query = (
        "SELECT id, state, number, sender, received_at, attempts, last_error, incomplete, text"
        " FROM messages"
    )
    params: tuple[object, ...] = ()
    if state is not None:
        query += " WHERE state = ?"
        params = (state,)
    query += " ORDER BY id DESC LIMIT ?"
    with _connect(state_dir) as conn:
        rows = conn.execute(query, (*params, limit)).fetchall()
    out = []
    for mid, st, number, sender, received, attempts, error, incomplete, text in rows:
        out.append(
            {
                "id": mid,
                "state": st,
                "number": number,
                "sender": sender,
                "received": datetime.fromtimestamp(received, UTC).isoformat(timespec="seconds"),
                "attempts": attempts,
                "incomplete": bool(incomplete),
                "last_error": error,
                "text": text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…",
            }
        )
    return out


def replay(state_dir: Path, ids: list[int], *, force: bool = False) -> list[int]:
    """Queue parked messages again (delivered ones too with ``force``: that sends a copy)."""
    states = ("parked", "held", "delivered") if force else ("parked", "held")
    placeholders = ",".join("?" * len(states))
    changed = []
    with _connect(state_dir) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for mid in ids:
            cur = conn.execute(
                "UPDATE messages SET state = 'pending', last_error = NULL, delivered_at = NULL"
                f" WHERE id = ? AND state IN ({placeholders})",
                (mid, *states),
            )
            if cur.rowcount:
                changed.append(mid)
        conn.execute("COMMIT")
    return changed


def park(state_dir: Path, ids: list[int], *, reason: str = "parked by operator") -> list[int]:
    changed = []
    with _connect(state_dir) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for mid in ids:
            cur = conn.execute(
                "UPDATE messages SET state = 'parked', last_error = ?"
                " WHERE id = ? AND state = 'pending'",
                (reason, mid),
            )
            if cur.rowcount:
                changed.append(mid)
        conn.execute("COMMIT")
    return changed
