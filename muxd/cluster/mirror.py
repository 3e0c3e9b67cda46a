"""The operations whose SMS this box pushes, copied from the cluster into the local journal.

The v1 matching and pusher work on the journal's ``operations`` table (an SMS belongs to the
operation open on its number when it reached the SIM); a box in a cluster keeps there a copy
of every operation on its SIMs, whichever box opened it, under its global activation id. So
an SMS is matched and pushed exactly as for a local operation, once per (message, operation).
The cluster's times (PostgreSQL's clock) become the window's ends.

A copy is written open, then updated when the cluster says the operation is closed (finished,
or expired: its number was released and no FINISH is expected) or gets its FINISH's status
(a FINISH after the expiry). A closed operation never seen open (this box was down meanwhile)
is copied closed: SMS that reached the SIM during its window are still pushed.

The FINISH reaches the box holding the SIM this way, whichever box answered it: a copy taking
its status for the first time is *credited* (:attr:`Copied.credited`), so the holder counts
the sale under its port once, however often the cluster repeats what it already copied.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from muxd.cluster.records import Operation as SharedOperation
from muxd.store import Journal
from muxd.upstream.v1.operations import Operation


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def local_operation(op: SharedOperation) -> Operation:
    """The cluster's operation as the v1 server and its observers know operations."""
    return Operation(
        activation_id=op.activation_id,
        number=op.number,
        service=op.service,
        country=op.country,
        operator=op.operator,
        sum=op.sum,
        rent=op.rent,
        state=op.state,
        status=op.status,
        created_at=op.created.timestamp(),
        expires_at=_ts(op.expires),
        finished_at=_ts(op.finished),
        expired_at=_ts(op.finished) if op.state == "expired" else None,
    )


@dataclass(frozen=True, slots=True)
class Credit:
    """An operation whose FINISH status this box took in for the first time."""

    op: Operation
    status: int
    finish_sum: float | None


@dataclass(slots=True)
class Copied:
    """What :func:`mirror` changed in the journal."""

    numbers: list[str] = field(default_factory=list)  # whose operations changed
    credited: list[Credit] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)  # copied open: new to this box


async def mirror(journal: Journal, ops: Sequence[SharedOperation]) -> Copied:
    """Copy ``ops`` into the journal, in one transaction; return the numbers whose operations
    changed there, the FINISHes taken in for the first time and the operations copied open."""
    rows = [(local_operation(op), op.finish_sum) for op in ops]

    def write(conn: sqlite3.Connection) -> Copied:
        out = Copied()
        for op, finish_sum in rows:
            found = conn.execute(
                "SELECT state, finished_at, status FROM operations WHERE activation_id = ?",
                (op.activation_id,),
            ).fetchone()
            if found is None:
                if op.state == "open":
                    # The cluster holds one open operation per number: one still open here
                    # was closed while this box did not hear of it; it ended by now at most.
                    conn.execute(
                        "UPDATE operations SET state = 'finished',"
                        " finished_at = coalesce(finished_at, ?)"
                        " WHERE number = ? AND state = 'open' AND activation_id != ?",
                        (op.created_at, op.number, op.activation_id),
                    )
                conn.execute(
                    "INSERT INTO operations(activation_id, number, service, country, operator,"
                    " sum, rent, state, status, created_at, expires_at, finished_at,"
                    " expired_at, finish_sum) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        op.activation_id,
                        op.number,
                        op.service,
                        op.country,
                        op.operator,
                        op.sum,
                        int(op.rent),
                        op.state,
                        op.status,
                        op.created_at,
                        op.expires_at,
                        op.finished_at,
                        op.expired_at,
                        finish_sum,
                    ),
                )
                out.numbers.append(op.number)
                if op.state == "open":
                    out.opened.append(op.activation_id)
                status_before = None
            elif op.state != "open" and (str(found[0]), found[1], found[2]) != (
                op.state,
                op.finished_at,
                op.status,
            ):
                conn.execute(
                    "UPDATE operations SET state = ?, status = ?, finished_at = ?,"
                    " expired_at = ?, finish_sum = ? WHERE activation_id = ?",
                    (
                        op.state,
                        op.status,
                        op.finished_at,
                        op.expired_at,
                        finish_sum,
                        op.activation_id,
                    ),
                )
                out.numbers.append(op.number)
                status_before = found[2]
            else:
                continue
            # The cluster records one FINISH status per operation, never changed after.
            if op.status is not None and status_before is None:
                out.credited.append(Credit(op, op.status, finish_sum))
        return out

    result: Copied = await journal.execute(write)
    return result


async def unfinished_here(journal: Journal, since: float) -> list[int]:
    """Activation ids the journal holds expired with no FINISH status, expired after ``since``
    (UNIX seconds): a FINISH that comes late sets the status of an expired operation, and
    its one notification may have been missed (the listener reconnecting, the box away)."""

    def read(conn: sqlite3.Connection) -> list[int]:
        return [
            int(aid)
            for (aid,) in conn.execute(
                "SELECT activation_id FROM operations WHERE state = 'expired'"
                " AND status IS NULL AND expired_at > ?",
                (since,),
            )
        ]

    result: list[int] = await journal.execute(read)
    return result


async def open_here(journal: Journal) -> list[int]:
    """Activation ids the journal holds open (copies whose close may have been missed)."""

    def read(conn: sqlite3.Connection) -> list[int]:
        return [
            int(aid)
            for (aid,) in conn.execute("SELECT activation_id FROM operations WHERE state = 'open'")
        ]

    result: list[int] = await journal.execute(read)
    return result


# PUSH_SMS smsIds are numbered per journal; in a cluster each box numbers its own from a start
# of its own (derived from its name: 2**20 starts, 2**32 ids each, all below 2**53 so a reader
# parsing JSON numbers as doubles keeps them exact), so two boxes never send one smsId for
# two different SMS.
SMS_ID_SPAN_BITS = 32
SMS_ID_STARTS = 2**20


def sms_id_start(box: str) -> int:
    """Where ``box``'s smsIds start (1 and up when the name hashes to 0)."""
    return (zlib.crc32(box.encode()) % SMS_ID_STARTS) << SMS_ID_SPAN_BITS


async def spread_sms_ids(journal: Journal, box: str) -> int:
    """Make the journal's next smsId at least this box's start; returns the start."""
    start = sms_id_start(box)

    def write(conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pushes'").fetchone()
        if row is None:
            conn.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('pushes', ?)", (start,))
        elif int(row[0]) < start:
            conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'pushes'", (start,))

    await journal.execute(write)
    return start
