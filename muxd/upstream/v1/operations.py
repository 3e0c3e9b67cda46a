"""API v1 state in the journal: operations, numbers sold per service, PUSH_SMS deliveries.

Onlinesim opens an operation with GET_NUMBER and only FINISH_ACTIVATION closes it; muxd pushes
every SMS that reached the number while the operation was open. The tables live in the journal
(:mod:`muxd.store.schema`) and every function here runs its SQL through
:meth:`Journal.execute`, i.e. in the writer thread, inside the group-commit transaction: when
one returns, its change is durable. Pushes and the SMS-to-operation rule are in
:mod:`muxd.upstream.v1.pushes` (re-exported here).

- ``operations``: one row per GET_NUMBER answered. ``activation_id`` is random (63 bits by
  default), so an id is practically never handed out twice, even after old rows are pruned.
  ``state`` is ``open`` | ``finished`` | ``expired``. ``expired`` is a local expiry (off by
  default): the number is free for sale again, but the operation stays open upstream until
  its FINISH (``finished_at``), and SMS that arrive meanwhile are still pushed to it. A unique
  partial index keeps one ``open`` operation per number.
- ``sold``: (number, service) pairs closed with status 3; the number is not offered for that
  service again (until the row is pruned after the journal's retention).
- Closed operations, settled pushes and sales older than the retention are pruned
  (:func:`prune`), like delivered messages.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from muxd.store.journal import Journal
from muxd.upstream.v1.pushes import (
    Assigned,
    Matcher,
    PushRow,
    PushState,
    assign_pending,
    attach_matching,
    mark_push_attempt,
    matching_for,
    note_push_failure,
    pending_pushes,
    settle_push,
)

__all__ = [
    "Assigned",
    "Matcher",
    "Operation",
    "Pruned",
    "PushRow",
    "PushState",
    "Reservation",
    "V1State",
    "assign_pending",
    "attach_matching",
    "closed_elsewhere",
    "expire",
    "finish",
    "load_state",
    "mark_push_attempt",
    "matching_for",
    "note_push_failure",
    "operation_counts",
    "pending_pushes",
    "prune",
    "reserve",
    "settle_push",
]

# A random id that is taken is drawn again; with 63 bits this never loops in practice.
ID_ATTEMPTS = 16

OP_COLUMNS = (
    "activation_id, number, service, country, operator, sum, rent, state, status, created_at,"
    " expires_at, finished_at, expired_at"
)

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
    expires_at: float | None  # None: no local expiry (rent, or expiry off)
    finished_at: float | None  # FINISH_ACTIVATION (or NO_OPERATION after a local expiry)
    expired_at: float | None = None  # local expiry: the number was freed for sale


def _operation(row: tuple[Any, ...]) -> Operation:
    (aid, number, service, country, operator, amount, rent, state, status, created, expires,
     finished, expired) = row  # fmt: skip
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
        expired_at=None if expired is None else float(expired),
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

    return await journal.execute(op)


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

    return await journal.execute(op)


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
                "UPDATE operations SET status = ?, finish_sum = ?,"
                " finished_at = coalesce(finished_at, ?) WHERE activation_id = ?",
                (status, amount, when, activation_id),
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

    return await journal.execute(op)


async def expire(
    journal: Journal, activation_ids: list[int], when: float, *, closed: bool = False
) -> list[int]:
    """Free the numbers of open operations nobody finished in time (nothing is sold). The
    operation stays open upstream until its FINISH; ``closed``: it never was (the GET_NUMBER
    answer did not reach Onlinesim), so it is finished here too."""

    def op(conn: sqlite3.Connection) -> list[int]:
        done = []
        for aid in activation_ids:
            cur = conn.execute(
                "UPDATE operations SET state = 'expired', expired_at = ?,"
                " finished_at = CASE WHEN ? THEN ? END WHERE activation_id = ? AND state = 'open'",
                (when, closed, when, aid),
            )
            if cur.rowcount:
                done.append(aid)
        return done

    return await journal.execute(op)


@dataclass(frozen=True, slots=True)
class Pruned:
    operations: int
    pushes: int
    sold: list[tuple[str, str]]  # (number, service) offered again


async def prune(journal: Journal, older_than: float) -> Pruned:
    """Delete settled pushes, closed operations (without a push left) and sales older than
    ``older_than``; open operations and pending pushes are kept whatever their age."""

    def op(conn: sqlite3.Connection) -> Pruned:
        pushes = conn.execute(
            "DELETE FROM pushes WHERE state != 'pending' AND done_at < ?", (older_than,)
        ).rowcount
        operations = conn.execute(
            "DELETE FROM operations WHERE state != 'open'"
            " AND coalesce(finished_at, expired_at, created_at) < ? AND NOT EXISTS"
            " (SELECT 1 FROM pushes p WHERE p.activation_id = operations.activation_id)",
            (older_than,),
        ).rowcount
        sold = [
            (str(n), str(s))
            for n, s in conn.execute(
                "SELECT number, service FROM sold WHERE sold_at < ?", (older_than,)
            )
        ]
        conn.execute("DELETE FROM sold WHERE sold_at < ?", (older_than,))
        return Pruned(operations, pushes, sold)

    return await journal.execute(op)


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

    return await journal.execute(op)


async def closed_elsewhere(
    journal: Journal, candidates: list[int], last_version: int | None
) -> tuple[int, list[tuple[Operation, float | None]]]:
    """The journal's change counter (``PRAGMA data_version``: it moves when another connection
    commits) and, when it moved since ``last_version``, which of ``candidates`` are no longer
    open there (with their FINISH sums)."""

    def op(conn: sqlite3.Connection) -> tuple[int, list[tuple[Operation, float | None]]]:
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if version == last_version or not candidates:
            return int(version), []
        wanted = set(candidates)
        still_open = {
            int(aid)
            for (aid,) in conn.execute("SELECT activation_id FROM operations WHERE state = 'open'")
        }
        gone = sorted(wanted - still_open)
        out: list[tuple[Operation, float | None]] = []
        for aid in gone:
            row = conn.execute(
                f"SELECT {OP_COLUMNS}, finish_sum FROM operations WHERE activation_id = ?",
                (aid,),
            ).fetchone()
            if row is not None:
                out.append((_operation(row[:-1]), None if row[-1] is None else float(row[-1])))
        return int(version), out

    return await journal.execute(op)
