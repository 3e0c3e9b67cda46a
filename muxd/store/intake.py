"""Journal operations of the receive path: store a part, reassemble, release stale sets.

These run inside the journal's writer thread, in the group-commit transaction: a part and the
message it completes are committed together, so reassembly state is always rebuildable from the
journal after a restart.

Reassembly key (gateways.md §0.4, §6): SIM identity + originator TOA and address + reference
(with its size) + total parts; never the SMSC or the time stamp. Parts with the same key and the
same sequence number but different content start a new *generation* of the key (a sender reusing
a reference for two messages in a row), so two messages are never mixed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable

import msgspec

from muxd.pdu import PduError, SmsDeliver, SmsStatusReport, SmsSubmit, decode_pdu, reassemble

# Placeholder for a missing part in a set released incomplete.
MISSING_PART = "[…]"


class PartIn(msgspec.Struct, frozen=True):
    """One PDU as read from a modem's storage."""

    sim: str
    port: str
    number: str | None
    storage: str
    index: int
    pdu: str
    tpdu_length: int | None
    received_at: float


class PutResult(msgspec.Struct, frozen=True):
    part_id: int
    new: bool  # False: the journal already held this part (a re-read after a crash)
    state: str  # "assembled" | "waiting" | "status_report" | "submit" | "parked"
    message_id: int | None


class PendingMessage(msgspec.Struct, frozen=True):
    id: int
    number: str
    sender: str
    text: str
    sms_time: int
    received_at: float


def fingerprint(sim: str, pdu: str) -> str:
    return hashlib.sha256(f"{sim}\x00{pdu.upper()}".encode()).hexdigest()


def concat_key(sim: str, sms: SmsDeliver) -> str | None:
    if sms.concat is None or sms.concat.total <= 1:
        return None
    c = sms.concat
    return f"{sim}|{sms.originator_toa}|{sms.originator}|{c.ref_bits}:{c.ref}|{c.total}"


def _insert_message(
    conn: sqlite3.Connection,
    sim: str,
    port: str,
    number: str | None,
    sms: SmsDeliver,
    text: str,
    received_at: float,
    *,
    incomplete: bool = False,
) -> int:
    cur = conn.execute(
        "INSERT INTO messages(sim, port, number, sender, text, sms_time, received_at, state,"
        " incomplete) VALUES (?,?,?,?,?,?,?, 'pending', ?)",
        (
            sim,
            port,
            number,
            sms.originator,
            text,
            int(sms.scts.timestamp()),
            received_at,
            int(incomplete),
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _classify(part: PartIn) -> tuple[str, SmsDeliver | None, str | None]:
    """(state, decoded DELIVER or None, error)."""
    try:
        decoded = decode_pdu(part.pdu, tpdu_length=part.tpdu_length)
    except PduError as exc:
        return "parked", None, str(exc)
    if isinstance(decoded, SmsDeliver):
        return ("waiting" if concat_key(part.sim, decoded) else "assembled"), decoded, None
    if isinstance(decoded, SmsStatusReport):
        return "status_report", None, None
    assert isinstance(decoded, SmsSubmit)
    return "submit", None, None


def _generation(conn: sqlite3.Connection, ckey: str, seq: int) -> int:
    """The first generation of ``ckey`` still missing ``seq`` (a new one if none is)."""
    taken: dict[int, set[int]] = {}
    for gen, s in conn.execute(
        "SELECT cgen, seq FROM parts WHERE ckey = ? AND state = 'waiting'", (ckey,)
    ):
        taken.setdefault(gen, set()).add(s)
    for gen in sorted(taken):
        if seq not in taken[gen]:
            return gen
    return max(taken, default=-1) + 1


def put_part_op(part: PartIn) -> Callable[[sqlite3.Connection], PutResult]:
    fp = fingerprint(part.sim, part.pdu)

    def op(conn: sqlite3.Connection) -> PutResult:
        row = conn.execute(
            "SELECT id, state, message_id FROM parts WHERE fingerprint = ?", (fp,)
        ).fetchone()
        if row is not None:
            return PutResult(part_id=row[0], new=False, state=row[1], message_id=row[2])
        state, sms, error = _classify(part)
        ckey = concat_key(part.sim, sms) if sms is not None else None
        seq = total = gen = None
        if ckey is not None and sms is not None and sms.concat is not None:
            seq, total = sms.concat.seq, sms.concat.total
            gen = _generation(conn, ckey, seq)
        message_id: int | None = None
        if sms is not None and ckey is None:
            # A single-part SMS: its message first, so the part row is written once.
            message_id = _insert_message(
                conn, part.sim, part.port, part.number, sms, sms.text, part.received_at
            )
        cur = conn.execute(
            "INSERT INTO parts(fingerprint, sim, port, number, storage, idx, pdu, tpdu_length,"
            " received_at, ckey, cgen, seq, total, state, error, message_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
                state,
                error,
                message_id,
            ),
        )
        part_id = cur.lastrowid
        assert part_id is not None
        if message_id is None and ckey is not None and gen is not None:
            message_id = _maybe_assemble(conn, ckey, gen)
            if message_id is not None:
                state = "assembled"
        return PutResult(part_id=part_id, new=True, state=state, message_id=message_id)

    return op


def _set_rows(
    conn: sqlite3.Connection, ckey: str, gen: int
) -> list[tuple[int, SmsDeliver, str, str | None, str, float]]:
    """(part id, decoded part, sim, number, port, received_at) of one waiting set, by seq."""
    out = []
    for pid, pdu, length, sim, number, port, received_at in conn.execute(
        "SELECT id, pdu, tpdu_length, sim, number, port, received_at FROM parts"
        " WHERE ckey = ? AND cgen = ? AND state = 'waiting' ORDER BY seq",
        (ckey, gen),
    ):
        decoded = decode_pdu(pdu, tpdu_length=length)
        assert isinstance(decoded, SmsDeliver)
        out.append((pid, decoded, sim, number, port, received_at))
    return out


def _maybe_assemble(conn: sqlite3.Connection, ckey: str, gen: int) -> int | None:
    rows = _set_rows(conn, ckey, gen)
    first = rows[0][1]
    assert first.concat is not None
    if len(rows) < first.concat.total:
        return None
    parts = [r[1] for r in rows]
    try:
        text = reassemble(parts)
    except PduError:
        # A broken UCS-2 surrogate across parts: deliver what decodes rather than lose a code.
        text = reassemble(parts, strict=False)
    # The message belongs to the number the SIM had when its last part arrived.
    last = max(rows, key=lambda r: r[5])
    message_id = _insert_message(conn, last[2], last[4], last[3], first, text, last[5])
    conn.executemany(
        "UPDATE parts SET state = 'assembled', message_id = ? WHERE id = ?",
        [(message_id, r[0]) for r in rows],
    )
    return message_id


def release_op(older_than: float) -> Callable[[sqlite3.Connection], list[int]]:
    """Release every waiting set whose first part arrived before ``older_than``, incomplete."""

    def op(conn: sqlite3.Connection) -> list[int]:
        stale = conn.execute(
            "SELECT ckey, cgen FROM parts WHERE state = 'waiting'"
            " GROUP BY ckey, cgen HAVING min(received_at) < ?",
            (older_than,),
        ).fetchall()
        released: list[int] = []
        for ckey, gen in stale:
            rows = _set_rows(conn, ckey, gen)
            first = rows[0][1]
            assert first.concat is not None
            by_seq = {r[1].concat.seq: r[1].text for r in rows if r[1].concat is not None}
            text = "".join(by_seq.get(i, MISSING_PART) for i in range(1, first.concat.total + 1))
            last = max(rows, key=lambda r: r[5])
            message_id = _insert_message(
                conn, last[2], last[4], last[3], first, text, last[5], incomplete=True
            )
            conn.executemany(
                "UPDATE parts SET state = 'assembled', message_id = ? WHERE id = ?",
                [(message_id, r[0]) for r in rows],
            )
            released.append(message_id)
        return released

    return op
