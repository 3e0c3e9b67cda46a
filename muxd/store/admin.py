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
from typing import TYPE_CHECKING

from muxd.errors import JournalError
from muxd.pdu import PduError, SmsDeliver, SmsStatusReport, decode_pdu
from muxd.store.deny import judge, rule_of
from muxd.store.intake import replay_part_op
from muxd.store.journal import BUSY_TIMEOUT_MS, JOURNAL_FILE
from muxd.store.schema import migrate
from muxd.store.states import MessageState, PartState, in_states, move

if TYPE_CHECKING:
    from muxd.deny import DenyList

M = MessageState
_PARK = move(M.PARKED, from_={M.PENDING}, sets="last_error = ?")

PREVIEW = 40
# Parked parts replayed per transaction: each holds the journal's write lock for milliseconds,
# well inside the running daemon's busy timeout, however many parts are replayed.
REPLAY_CHUNK = 100


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
        for state in (M.PENDING, M.HELD, M.DELIVERED, M.PARKED, M.DENIED):
            out[f"messages_{state.value}"] = 0
        for state, n in conn.execute("SELECT state, count(*) FROM messages GROUP BY state"):
            out[f"messages_{state}"] = n
        for state, n in conn.execute("SELECT state, count(*) FROM parts GROUP BY state"):
            out[f"parts_{state}"] = n
        (oldest,) = conn.execute(
            f"SELECT min(received_at) FROM messages WHERE {in_states(M.PENDING)}"
        ).fetchone()
        out["oldest_pending_age_s"] = round(time.time() - oldest, 1) if oldest else None
        for note, n in conn.execute(
            f"SELECT last_error, count(*) FROM messages WHERE {in_states(M.DENIED)}"
            " GROUP BY last_error"
        ):
            out[f"denied_by_{rule_of(note) or 'unknown'}"] = n
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
    """Queue parked messages again (delivered ones too with ``force``: that sends a copy).
    A denied message replayed is released deliberately: it is forwarded, not judged again."""
    states = {M.PARKED, M.HELD, M.DENIED} | ({M.DELIVERED} if force else set())
    statement = move(M.PENDING, from_=states, sets="last_error = NULL, delivered_at = NULL")
    changed = []
    with _connect(state_dir) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for mid in ids:
            cur = conn.execute(statement, (mid,))
            if cur.rowcount:
                changed.append(mid)
        conn.execute("COMMIT")
    return changed


def park(state_dir: Path, ids: list[int], *, reason: str = "parked by operator") -> list[int]:
    changed = []
    with _connect(state_dir) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for mid in ids:
            cur = conn.execute(_PARK, (reason, mid))
            if cur.rowcount:
                changed.append(mid)
        conn.execute("COMMIT")
    return changed


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


def _decoded(pdu: str, tpdu_length: int | None) -> dict[str, object]:
    """What the current decoder makes of a PDU: a summary, or its error."""
    try:
        sms = decode_pdu(pdu, tpdu_length=tpdu_length)
    except PduError as exc:
        return {"decodes": False, "error": str(exc)}
    if isinstance(sms, SmsDeliver):
        return {
            "decodes": True,
            "type": "deliver",
            "sender": sms.originator,
            "timestamp": None if sms.scts is None else sms.scts.isoformat(),
            "concat": None if sms.concat is None else f"{sms.concat.seq}/{sms.concat.total}",
            "text": sms.text,
        }
    kind = "status-report" if isinstance(sms, SmsStatusReport) else "submit"
    return {"decodes": True, "type": kind}


def list_parts(
    state_dir: Path, *, decode: bool = False, limit: int = 50
) -> list[dict[str, object]]:
    """Parked parts (PDUs the decoder refused when they were read), newest first; with
    ``decode``, what the current decoder makes of each."""
    with _connect(state_dir) as conn:
        rows = conn.execute(
            "SELECT id, port, sim, storage, idx, error, received_at, pdu, tpdu_length"
            f" FROM parts WHERE {in_states(PartState.PARKED)} ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
    out = []
    for pid, port, sim, storage, idx, error, received, pdu, length in rows:
        row: dict[str, object] = {
            "id": pid,
            "port": port,
            "sim": sim,
            "storage": storage,
            "index": idx,
            "error": error,
            "received": _iso(received),
        }
        if decode:
            row["pdu"] = pdu
            row["now"] = _decoded(pdu, length)
        out.append(row)
    return out


def replay_parts(
    state_dir: Path, ids: list[int] | None, deny: DenyList | None = None
) -> list[dict[str, object]]:
    """Run parked parts (``ids``, or all when None) through intake again with the current
    decoder. One that decodes now is stored, reassembled and forwarded like a part just read
    (the running daemon ships it within its idle poll), unless ``deny`` denies it; one that
    still fails stays parked."""
    out: list[dict[str, object]] = []
    with _connect(state_dir) as conn:
        migrate(conn)
        if ids is None:
            parked = f"SELECT id FROM parts WHERE {in_states(PartState.PARKED)}"
            ids = [i for (i,) in conn.execute(parked)]
        for start in range(0, len(ids), REPLAY_CHUNK):
            conn.execute("BEGIN IMMEDIATE")
            try:
                mono = time.monotonic()
                for pid in ids[start : start + REPLAY_CHUNK]:
                    result = replay_part_op(pid, mono)(conn)
                    if result is not None:
                        made = [*result.released, *filter(None, [result.message_id])]
                        row: dict[str, object] = {
                            "id": pid,
                            "state": result.state,
                            "message_id": result.message_id,
                        }
                        if denied := judge(conn, deny, made):
                            row["denied"] = denied
                        out.append(row)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
    return out
