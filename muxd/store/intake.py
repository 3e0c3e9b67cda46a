"""Journal operations of the receive path: store a part, reassemble, release stale sets.

These run inside the journal's writer thread, in the group-commit transaction: a part and the
message it completes are committed together, so reassembly state is always rebuildable from the
journal after a restart.

A part is decoded once, before the transaction (:func:`classify`, called by the journal on the
event loop): the transaction that gates the delete from the modem does no decoding. The parts
of a waiting set are kept decoded in memory (:data:`DecodedCache`, keyed by the PDU text, so a
rolled-back insert can never leave a wrong entry behind) until their set closes, so a set is
not decoded again on each arrival; after a restart a part missing from it is decoded from its
stored PDU once. Memory, not columns: the decoded form is only needed while a set is open
(seconds, bounded by the reassembly timeout), and the PDU stays the one record of a part.

Which waiting set a part of a concatenated SMS joins is decided by :func:`muxd.pdu.place_part`
(key, generations by SMSC time stamp, a cap per key); this module keeps the sets in SQLite.
Every time here is either wall time (``received_at``: stored and reported) or a monotonic reading
(``mono``, ``seen_mono``: ages and deadlines only); see :mod:`muxd.store.clock`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable

import msgspec

from muxd.pdu import (
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    WaitingPart,
    concat_key,
    decode_pdu,
    place_part,
    reassemble,
)
from muxd.store.clock import DateSource, plausible_stamp, sms_date
from muxd.store.states import MessageState, PartState, in_states, move_part

__all__ = [
    "MISSING_PART",
    "Classified",
    "DecodedCache",
    "PartIn",
    "PendingMessage",
    "PutResult",
    "classify",
    "concat_key",
    "fingerprint",
    "put_part_op",
    "release_op",
    "replay_part_op",
]

# Placeholder for a missing part in a set released incomplete.
MISSING_PART = "[…]"

# Decoded DELIVERs of waiting parts by (PDU as stored, TPDU length); writer thread only.
DecodedCache = dict[tuple[str, int | None], SmsDeliver]


class PartIn(msgspec.Struct, frozen=True):
    """One PDU as read from a modem's storage."""

    sim: str
    port: str
    number: str | None
    storage: str
    index: int
    pdu: str
    tpdu_length: int | None
    received_at: float  # wall time muxd read it (Unix seconds)


class PutResult(msgspec.Struct, frozen=True):
    part_id: int
    new: bool  # False: the journal already held this part (a re-read after a crash)
    state: PartState
    message_id: int | None
    # Messages of older sets under the part's key released incomplete to make room (the cap).
    released: tuple[int, ...] = ()
    # The deny-list's rule for each message of this result it denied (muxd.store.deny).
    denied: tuple[str, ...] = ()


class PendingMessage(msgspec.Struct, frozen=True):
    id: int
    number: str
    sender: str
    text: str
    sms_time: int
    received_at: float


_ASSEMBLED = move_part(PartState.ASSEMBLED, sets="message_id = ?")


def fingerprint(sim: str, pdu: str) -> str:
    return hashlib.sha256(f"{sim}\x00{pdu.upper()}".encode()).hexdigest()


class _Row(msgspec.Struct, frozen=True):
    """One stored part of a waiting set, decoded."""

    id: int
    sms: SmsDeliver
    pdu: str
    tpdu_length: int | None
    sim: str
    number: str | None
    port: str
    received_at: float


def _insert_message(
    conn: sqlite3.Connection,
    last: _Row | PartIn,
    sms: SmsDeliver,
    text: str,
    date: tuple[int, DateSource],
    mono: float,
    *,
    incomplete: bool = False,
) -> int:
    """A message in the name of ``last`` (the part that completed it: its SIM's number)."""
    cur = conn.execute(
        "INSERT INTO messages(sim, port, number, sender, text, sms_time, sms_time_source,"
        " received_at, state, incomplete, seen_mono)"
        f" VALUES (?,?,?,?,?,?,?,?, '{MessageState.PENDING.value}', ?, ?)",
        (
            last.sim,
            last.port,
            last.number,
            sms.originator,
            text,
            date[0],
            date[1],
            last.received_at,
            int(incomplete),
            mono,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _set_date(rows: list[_Row]) -> tuple[int, DateSource]:
    """A set's date: the first plausible stamp in part order, else when its first part was read."""
    for r in rows:
        if plausible_stamp(r.sms.scts, r.received_at):
            return sms_date(r.sms.scts, r.received_at)
    return int(min(r.received_at for r in rows)), "read"


class Classified(msgspec.Struct, frozen=True):
    """What a part is, decoded: its state on arrival, the DELIVER (None for other kinds or a
    PDU that does not decode) and the decoder's error."""

    state: PartState
    sms: SmsDeliver | None = None
    error: str | None = None


def classify(part: PartIn) -> Classified:
    """Decode one part (no I/O: called before its transaction)."""
    try:
        decoded = decode_pdu(part.pdu, tpdu_length=part.tpdu_length)
    except PduError as exc:
        return Classified(PartState.PARKED, error=str(exc))
    if isinstance(decoded, SmsDeliver):
        waiting = concat_key(part.sim, decoded) is not None
        return Classified(PartState.WAITING if waiting else PartState.ASSEMBLED, decoded)
    if isinstance(decoded, SmsStatusReport):
        return Classified(PartState.STATUS_REPORT)
    assert isinstance(decoded, SmsSubmit)
    return Classified(PartState.SUBMIT)


def _store(
    conn: sqlite3.Connection,
    part: PartIn,
    fp: str,
    mono: float,
    classified: Classified,
    cache: DecodedCache,
    part_id: int | None = None,
) -> PutResult:
    """Insert (under ``part_id`` when given) and reassemble one classified part."""
    state, sms, error = classified.state, classified.sms, classified.error
    ckey = concat_key(part.sim, sms) if sms is not None else None
    stamp = sms.scts.timestamp() if sms is not None and sms.scts is not None else None
    seq = total = gen = None
    released: tuple[int, ...] = ()
    if ckey is not None and sms is not None and sms.concat is not None:
        seq, total = sms.concat.seq, sms.concat.total
        waiting = [
            WaitingPart(*r)
            for r in conn.execute(
                "SELECT cgen, seq, scts, received_at FROM parts"
                f" WHERE ckey = ? AND {in_states(PartState.WAITING)}",
                (ckey,),
            )
        ]
        placed = place_part(waiting, seq, stamp, part.received_at)
        gen = placed.gen
        released = tuple(_release_set(conn, ckey, g, mono, cache) for g in placed.release)
        cache[(part.pdu.upper(), part.tpdu_length)] = sms
    message_id: int | None = None
    if sms is not None and ckey is None:
        # A single-part SMS: its message first, so the part row is written once.
        date = sms_date(sms.scts, part.received_at)
        message_id = _insert_message(conn, part, sms, sms.text, date, mono)
    cur = conn.execute(
        "INSERT INTO parts(id, fingerprint, sim, port, number, storage, idx, pdu, tpdu_length,"
        " received_at, ckey, cgen, seq, total, state, error, message_id, scts, seen_mono)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            part_id,
            fp,
            part.sim,
            part.port,
            part.number,
            part.storage,
            part.index,
            part.pdu.upper(),
            part.tpdu_length,
            part.received_at,
            ckey,
            gen,
            seq,
            total,
            state.value,
            error,
            message_id,
            stamp,
            mono,
        ),
    )
    new_id = cur.lastrowid
    assert new_id is not None
    if message_id is None and ckey is not None and gen is not None:
        message_id = _maybe_assemble(conn, ckey, gen, mono, cache)
        if message_id is not None:
            state = PartState.ASSEMBLED
    return PutResult(
        part_id=new_id, new=True, state=state, message_id=message_id, released=released
    )


def put_part_op(
    part: PartIn, mono: float, classified: Classified, cache: DecodedCache
) -> Callable[[sqlite3.Connection], PutResult]:
    """Store one part read at ``part.received_at`` (wall), first seen at ``mono``, decoded
    beforehand (``classified``)."""
    fp = fingerprint(part.sim, part.pdu)

    def op(conn: sqlite3.Connection) -> PutResult:
        row = conn.execute(
            "SELECT id, state, message_id FROM parts WHERE fingerprint = ?", (fp,)
        ).fetchone()
        if row is not None:
            return PutResult(part_id=row[0], new=False, state=PartState(row[1]), message_id=row[2])
        return _store(conn, part, fp, mono, classified, cache)

    return op


def replay_part_op(
    part_id: int, mono: float, cache: DecodedCache | None = None
) -> Callable[[sqlite3.Connection], PutResult | None]:
    """Run a parked part through intake again (same id), with the current decoder.

    None when no parked part has that id. A part that still fails stays parked with the new
    error; one that decodes now is reassembled and forwarded like any other.
    """

    def op(conn: sqlite3.Connection) -> PutResult | None:
        row = conn.execute(
            "SELECT fingerprint, sim, port, number, storage, idx, pdu, tpdu_length, received_at"
            f" FROM parts WHERE id = ? AND {in_states(PartState.PARKED)}",
            (part_id,),
        ).fetchone()
        if row is None:
            return None
        fp, *fields = row
        conn.execute("DELETE FROM parts WHERE id = ?", (part_id,))
        part = PartIn(*fields)
        return _store(conn, part, fp, mono, classify(part), {} if cache is None else cache, part_id)

    return op


def _set_rows(conn: sqlite3.Connection, ckey: str, gen: int, cache: DecodedCache) -> list[_Row]:
    """The parts of one waiting set, decoded (from ``cache``, else from the PDU), by seq."""
    out = []
    for pid, pdu, length, sim, number, port, received_at in conn.execute(
        "SELECT id, pdu, tpdu_length, sim, number, port, received_at FROM parts"
        f" WHERE ckey = ? AND cgen = ? AND {in_states(PartState.WAITING)} ORDER BY seq",
        (ckey, gen),
    ):
        decoded = cache.get((pdu, length))
        if decoded is None:
            fresh = decode_pdu(pdu, tpdu_length=length)
            assert isinstance(fresh, SmsDeliver)
            decoded = cache[(pdu, length)] = fresh
        out.append(_Row(pid, decoded, pdu, length, sim, number, port, received_at))
    return out


def _close_set(
    conn: sqlite3.Connection,
    rows: list[_Row],
    text: str,
    mono: float,
    cache: DecodedCache,
    *,
    incomplete: bool,
) -> int:
    # The message belongs to the number the SIM had when its last part arrived.
    last = max(rows, key=lambda r: r.received_at)
    message_id = _insert_message(
        conn, last, rows[0].sms, text, _set_date(rows), mono, incomplete=incomplete
    )
    conn.executemany(_ASSEMBLED, [(message_id, r.id) for r in rows])
    for r in rows:
        cache.pop((r.pdu, r.tpdu_length), None)
    return message_id


def _maybe_assemble(
    conn: sqlite3.Connection, ckey: str, gen: int, mono: float, cache: DecodedCache
) -> int | None:
    rows = _set_rows(conn, ckey, gen, cache)
    first = rows[0].sms
    assert first.concat is not None
    if len(rows) < first.concat.total:
        return None
    parts = [r.sms for r in rows]
    try:
        text = reassemble(parts)
    except PduError:
        # A broken UCS-2 surrogate across parts: deliver what decodes rather than lose a code.
        text = reassemble(parts, strict=False)
    return _close_set(conn, rows, text, mono, cache, incomplete=False)


def _release_set(
    conn: sqlite3.Connection, ckey: str, gen: int, mono: float, cache: DecodedCache
) -> int:
    """Deliver one waiting set as it is, ``[…]`` for each missing part; its message id."""
    rows = _set_rows(conn, ckey, gen, cache)
    first = rows[0].sms
    assert first.concat is not None
    by_seq = {r.sms.concat.seq: r.sms.text for r in rows if r.sms.concat is not None}
    text = "".join(by_seq.get(i, MISSING_PART) for i in range(1, first.concat.total + 1))
    return _close_set(conn, rows, text, mono, cache, incomplete=True)


def release_op(
    seen_before: float, mono: float, cache: DecodedCache
) -> Callable[[sqlite3.Connection], list[int]]:
    """Release, incomplete, every waiting set first seen by ``seen_before`` (monotonic)."""

    def op(conn: sqlite3.Connection) -> list[int]:
        stale = conn.execute(
            f"SELECT ckey, cgen FROM parts WHERE {in_states(PartState.WAITING)}"
            " GROUP BY ckey, cgen HAVING min(seen_mono) <= ?",
            (seen_before,),
        ).fetchall()
        return [_release_set(conn, ckey, gen, mono, cache) for ckey, gen in stale]

    return op
