"""API v1 state in the journal: operations, numbers sold per service, PUSH_SMS deliveries.

Onlinesim opens an operation with GET_NUMBER and closes it with FINISH_ACTIVATION
(reseller-api.md §6.2, §6.4); muxd pushes every SMS received during an open operation
(§6.3). The tables live in the journal (migration 4 of :mod:`muxd.store.schema`) and every
function here runs its SQL through :meth:`Journal.execute`, i.e. in the writer thread, inside
the group-commit transaction: when one returns, its change is durable.

- ``operations``: one row per GET_NUMBER answered. ``activation_id`` is random (63 bits by
  default) and rows are never deleted, so an id is never handed out twice. ``state`` is
  ``open`` | ``finished`` | ``expired``; a unique partial index keeps one open operation per
  number, so two reservations can never share a number even if the caller's own bookkeeping
  were wrong.
- ``sold``: (number, service) pairs closed with status 3; the number is not offered for that
  service again.
- ``pushes``: one row per (message, operation), created before the first attempt.
  ``sms_id`` (AUTOINCREMENT: never reused) is the ``smsId`` sent, the same on every retry.
  ``state`` is ``pending`` | ``delivered`` | ``rejected`` | ``filtered`` | ``no_operation``.

Message states added by v1 (``messages.state`` is free text): ``no_operation`` (no operation
was open on the number when the SMS arrived: kept, counted, not pushed), ``filtered`` (local
service filter said no), ``rejected`` (Onlinesim refused it for good), and ``delivered``.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from muxd.store.journal import Journal

# A random id that is taken is drawn again; with 63 bits this never loops in practice.
ID_ATTEMPTS = 16

OP_COLUMNS = (
    "activation_id, number, service, country, operator, sum, rent, state, status, created_at,"
    " expires_at, finished_at"
)

PushState = Literal["pending", "delivered", "rejected", "filtered", "no_operation"]
FinishOutcome = Literal["finished", "late", "repeat", "unknown"]


@dataclass(frozen=True, slots=True)
class Operation:
    activation_id: int
    number: str  # +E.164
    service: str  # "rent" for a rent operation
    country: str
    operator: str
    sum: float | None
    rent: bool
    state: str
    status: int | None
    created_at: float
    expires_at: float | None  # None: no local expiry (rent)
    finished_at: float | None


def _operation(row: tuple[Any, ...]) -> Operation:
    (aid, number, service, country, operator, amount, rent, state, status, created, expires,
     finished) = row  # fmt: skip
    return Operation(
        activation_id=int(aid),
        number=str(number),
        service=str(service),
        country=str(country),
        operator=str(operator),
        sum=None if amount is None else float(amount),
        rent=bool(rent),
        state=str(state),
        status=None if status is None else int(status),
        created_at=float(created),
        expires_at=None if expires is None else float(expires),
        finished_at=None if finished is None else float(finished),
    )


@dataclass(frozen=True, slots=True)
class V1State:
    """What the v1 service keeps in memory, read back at start."""

    open: list[Operation]
    sold: list[tuple[str, str]]  # (number, service)
    last_used: dict[str, float]  # number -> when its latest operation was created


async def load_state(journal: Journal) -> V1State:
    def op(conn: sqlite3.Connection) -> V1State:
        open_ops = [
            _operation(r)
            for r in conn.execute(
                f"SELECT {OP_COLUMNS} FROM operations WHERE state = 'open' ORDER BY created_at"
            )
        ]
        sold = [(str(n), str(s)) for n, s in conn.execute("SELECT number, service FROM sold")]
        last_used = {
            str(n): float(t)
            for n, t in conn.execute(
                "SELECT number, max(created_at) FROM operations GROUP BY number"
            )
        }
        return V1State(open=open_ops, sold=sold, last_used=last_used)

    state: V1State = await journal.execute(op)
    return state


@dataclass(frozen=True, slots=True)
class Reservation:
    """What GET_NUMBER asks to store."""

    number: str
    service: str
    country: str
    operator: str
    sum: float | None
    rent: bool
    created_at: float
    expires_at: float | None


def new_activation_id(bits: int) -> int:
    """A random positive id below 2**bits."""
    while True:
        value = secrets.randbits(bits)
        if value > 0:
            return value


# The number is in an open operation, or (not rent) already sold for the service.
_TAKEN = (
    "SELECT EXISTS(SELECT 1 FROM operations WHERE number = ? AND state = 'open')"
    " OR (NOT ? AND EXISTS(SELECT 1 FROM sold WHERE number = ? AND service = ?))"
)


async def reserve(journal: Journal, res: Reservation, *, id_bits: int = 63) -> Operation | None:
    """Atomically: check the number is neither in an open operation nor sold for the service,
    then insert the operation. None when the number is taken."""

    def op(conn: sqlite3.Connection) -> Operation | None:
        params = (res.number, int(res.rent), res.number, res.service)
        (taken,) = conn.execute(_TAKEN, params).fetchone()
        if taken:
            return None
        for _ in range(ID_ATTEMPTS):
            aid = new_activation_id(id_bits)
            try:
                conn.execute(
                    "INSERT INTO operations(activation_id, number, service, country, operator,"
                    " sum, rent, state, created_at, expires_at) VALUES (?,?,?,?,?,?,?,'open',?,?)",
                    (
                        aid,
                        res.number,
                        res.service,
                        res.country,
                        res.operator,
                        res.sum,
                        int(res.rent),
                        res.created_at,
                        res.expires_at,
                    ),
                )
                break
            except sqlite3.IntegrityError:
                continue  # the id is taken (the number is not: checked above)
        else:
            raise ValueError("no free activation id")
        return Operation(
            activation_id=aid,
            number=res.number,
            service=res.service,
            country=res.country,
            operator=res.operator,
            sum=res.sum,
            rent=res.rent,
            state="open",
            status=None,
            created_at=res.created_at,
            expires_at=res.expires_at,
            finished_at=None,
        )

    result: Operation | None = await journal.execute(op)
    return result


async def finish(
    journal: Journal,
    activation_id: int,
    status: int,
    amount: float | None,
    when: float,
    *,
    sells: bool,
) -> tuple[FinishOutcome, Operation | None]:
    """Close an operation (idempotent). ``sells``: this status marks (number, service) sold.

    ``finished``: it was open and is now closed. ``late``: it had expired locally and this is
    its first FINISH (the status is recorded, a sale counted, the number untouched).
    ``repeat``: it was closed already; nothing changes. ``unknown``: no such id.
    """

    def op(conn: sqlite3.Connection) -> tuple[FinishOutcome, Operation | None]:
        row = conn.execute(
            f"SELECT {OP_COLUMNS} FROM operations WHERE activation_id = ?", (activation_id,)
        ).fetchone()
        if row is None:
            return "unknown", None
        found = _operation(row)
        outcome: FinishOutcome
        if found.state == "open":
            conn.execute(
                "UPDATE operations SET state = 'finished', status = ?, finished_at = ?,"
                " finish_sum = ? WHERE activation_id = ?",
                (status, when, amount, activation_id),
            )
            outcome = "finished"
        elif found.state == "expired" and found.status is None:
            conn.execute(
                "UPDATE operations SET status = ?, finish_sum = ? WHERE activation_id = ?",
                (status, amount, activation_id),
            )
            outcome = "late"
        else:
            return "repeat", found
        if sells and not found.rent:
            conn.execute(
                "INSERT OR IGNORE INTO sold(number, service, activation_id, sold_at)"
                " VALUES (?,?,?,?)",
                (found.number, found.service, activation_id, when),
            )
        return outcome, found

    result: tuple[FinishOutcome, Operation | None] = await journal.execute(op)
    return result


async def expire(journal: Journal, activation_ids: list[int], when: float) -> list[int]:
    """Close open operations nobody finished (the number is free again, nothing is sold)."""

    def op(conn: sqlite3.Connection) -> list[int]:
        done = []
        for aid in activation_ids:
            cur = conn.execute(
                "UPDATE operations SET state = 'expired', finished_at = ?"
                " WHERE activation_id = ? AND state = 'open'",
                (when, aid),
            )
            if cur.rowcount:
                done.append(aid)
        return done

    result: list[int] = await journal.execute(op)
    return result


# -- PUSH_SMS -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRow:
    """One SMS to push: everything the PUSH_SMS body needs, read back identically on retry."""

    sms_id: int
    message_id: int
    activation_id: int
    rent: bool
    number: str  # +E.164
    sender: str
    text: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Assigned:
    """What one pass over the pending messages did."""

    pushes: list[PushRow]
    no_operation: int  # messages kept unpushed: no operation was open
    filtered: int  # messages kept unpushed: the local filter said no
    scanned: int  # messages looked at (== limit: there may be more)


# matches(service, sender, text) -> push it?
Matcher = Callable[[str, str, str], bool]

_OPEN_AT = (
    f"SELECT {OP_COLUMNS} FROM operations WHERE number = ? AND created_at <= ?"
    " AND (finished_at IS NULL OR finished_at >= ?) ORDER BY created_at DESC LIMIT 1"
)


async def assign_pending(journal: Journal, limit: int, matches: Matcher, when: float) -> Assigned:
    """Give each pending message without a pending push the operation that was open on its
    number when it arrived: a push row (``pending``, or ``filtered``), or no operation."""

    def op(conn: sqlite3.Connection) -> Assigned:
        rows = conn.execute(
            "SELECT m.id, m.number, m.sender, m.text, m.received_at FROM messages m"
            " WHERE m.state = 'pending' AND NOT EXISTS (SELECT 1 FROM pushes p"
            " WHERE p.message_id = m.id AND p.state = 'pending') ORDER BY m.id LIMIT ?",
            (limit,),
        ).fetchall()
        pushes: list[PushRow] = []
        no_operation = filtered = 0
        for mid, number, sender, text, received_at in rows:
            found = None
            if number is not None:
                row = conn.execute(_OPEN_AT, (number, received_at, received_at)).fetchone()
                found = None if row is None else _operation(row)
            if found is None:
                conn.execute("UPDATE messages SET state = 'no_operation' WHERE id = ?", (mid,))
                no_operation += 1
                continue
            keep = found.rent or matches(found.service, sender, text)
            state = "pending" if keep else "filtered"
            # A push that exists already (an operator replayed a delivered message) is re-sent.
            conn.execute(
                "INSERT INTO pushes(message_id, activation_id, kind, state, created_at, done_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(message_id, activation_id) DO UPDATE"
                " SET state = excluded.state, done_at = excluded.done_at",
                (
                    mid,
                    found.activation_id,
                    "rent" if found.rent else "sms",
                    state,
                    when,
                    None if keep else when,
                ),
            )
            if not keep:
                conn.execute(
                    "UPDATE messages SET state = 'filtered', last_error = ? WHERE id = ?",
                    (f"filtered for {found.service}", mid),
                )
                filtered += 1
                continue
            sms_id, attempts = conn.execute(
                "SELECT sms_id, attempts FROM pushes WHERE message_id = ? AND activation_id = ?",
                (mid, found.activation_id),
            ).fetchone()
            pushes.append(
                PushRow(
                    sms_id,
                    mid,
                    found.activation_id,
                    found.rent,
                    found.number,
                    sender,
                    text,
                    attempts,
                )
            )
        return Assigned(pushes, no_operation, filtered, len(rows))

    result: Assigned = await journal.execute(op)
    return result


async def pending_pushes(journal: Journal) -> list[PushRow]:
    """Every push not settled yet (read at start), oldest first."""

    def op(conn: sqlite3.Connection) -> list[PushRow]:
        return [
            PushRow(int(a), int(b), int(c), bool(d), str(e), str(f), str(g), int(h))
            for a, b, c, d, e, f, g, h in conn.execute(
                "SELECT p.sms_id, p.message_id, p.activation_id, o.rent, o.number, m.sender,"
                " m.text, p.attempts FROM pushes p JOIN messages m ON m.id = p.message_id"
                " JOIN operations o ON o.activation_id = p.activation_id"
                " WHERE p.state = 'pending' ORDER BY p.sms_id"
            )
        ]

    result: list[PushRow] = await journal.execute(op)
    return result


async def mark_push_attempt(journal: Journal, sms_ids: list[int]) -> None:
    """Record, before sending, that these pushes are going out (a crash shows them retried)."""

    def op(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "UPDATE pushes SET attempts = attempts + 1 WHERE sms_id = ?", [(i,) for i in sms_ids]
        )

    await journal.execute(op)


async def note_push_failure(journal: Journal, sms_id: int, result: str) -> None:
    """Keep the last failure of a push that will be retried."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE pushes SET result = ? WHERE sms_id = ? AND state = 'pending'",
            (result[:500], sms_id),
        )

    await journal.execute(op)


async def settle_push(
    journal: Journal, push: PushRow, state: PushState, result: str, when: float
) -> bool:
    """Close a push for good and give its message the same fate. True when the message left
    the pending state (the caller keeps the journal's backlog count exact)."""
    message_state = "delivered" if state == "delivered" else state

    def op(conn: sqlite3.Connection) -> bool:
        conn.execute(
            "UPDATE pushes SET state = ?, result = ?, done_at = ?"
            " WHERE sms_id = ? AND state = 'pending'",
            (state, result[:500], when, push.sms_id),
        )
        if message_state == "delivered":
            cur = conn.execute(
                "UPDATE messages SET state = 'delivered', delivered_at = ?, last_error = NULL"
                " WHERE id = ? AND state = 'pending'",
                (when, push.message_id),
            )
        else:
            cur = conn.execute(
                "UPDATE messages SET state = ?, last_error = ? WHERE id = ? AND state = 'pending'",
                (message_state, result[:500], push.message_id),
            )
        return cur.rowcount > 0

    changed: bool = await journal.execute(op)
    return changed


async def operation_counts(journal: Journal) -> dict[str, int]:
    """Operations by state and pushes by state (status pages, tests)."""

    def op(conn: sqlite3.Connection) -> dict[str, int]:
        out: dict[str, int] = {}
        for state, n in conn.execute("SELECT state, count(*) FROM operations GROUP BY state"):
            out[f"operations_{state}"] = int(n)
        for state, n in conn.execute("SELECT state, count(*) FROM pushes GROUP BY state"):
            out[f"pushes_{state}"] = int(n)
        (out["sold"],) = conn.execute("SELECT count(*) FROM sold").fetchone()
        return out

    result: dict[str, int] = await journal.execute(op)
    return result
