"""API v1 PUSH_SMS rows in the journal: which operation each SMS belongs to (the rule is in
:mod:`muxd.upstream.v1.opmatch`), and the state of each push.

``pushes``: one row per (message, operation), created before the first attempt. ``sms_id``
(AUTOINCREMENT: never reused) is the ``smsId`` sent, the same on every retry. ``state`` is
``pending`` | ``delivered`` | ``rejected`` | ``filtered`` | ``no_operation``.

Message states added by v1 (``messages.state`` is free text): ``unmatched`` (no operation
fits yet: looked at again when operations change, for a bounded time), ``no_operation`` (none
fits for good, or Onlinesim answered NO_OPERATION: kept, counted, not pushed), ``filtered``
(local service filter said no), ``rejected`` (Onlinesim refused it for good), ``delivered``.

Every function runs its SQL through :meth:`Journal.execute` (the writer thread, inside the
group-commit transaction): when one returns, its change is durable.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from muxd.store.journal import Journal
from muxd.store.states import MessageState, in_states, move
from muxd.upstream.v1.opmatch import Matching, Window, pick

PushState = Literal["pending", "delivered", "rejected", "filtered", "no_operation"]

# The matching state per journal. The pusher calls assign_pending(journal, ...) without it;
# the v1 service attaches the one that carries its clocks and its view of operation changes.
_MATCHING: weakref.WeakKeyDictionary[Journal, Matching] = weakref.WeakKeyDictionary()


def attach_matching(journal: Journal, matching: Matching) -> None:
    _MATCHING[journal] = matching


def matching_for(journal: Journal) -> Matching:
    found = _MATCHING.get(journal)
    if found is None:
        found = _MATCHING[journal] = Matching()
    return found


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
    no_operation: int  # pending messages set aside: no operation fits (yet)
    filtered: int  # pending messages kept unpushed: the local filter said no
    scanned: int  # pending messages looked at (== limit: there may be more)
    revived: int = 0  # unmatched messages that found their operation and are pending again
    unmatched: list[int] = field(default_factory=list)  # still waiting for an operation
    settled: list[int] = field(default_factory=list)  # found an operation (or filtered)


# matches(service, sender, text) -> push it?
Matcher = Callable[[str, str, str], bool]

_CANDIDATES = (
    "SELECT activation_id, created_at, finished_at, service, rent, number FROM operations"
    " WHERE number = ? AND created_at <= ? AND (finished_at IS NULL OR finished_at >= ?)"
)
_MESSAGES = "SELECT m.id, m.number, m.sender, m.text, m.sms_time, m.state FROM messages m"
_M = MessageState
_FILTERED = move(_M.FILTERED, sets="last_error = ?")
_MATCHED = move(_M.PENDING, from_={_M.PENDING, _M.UNMATCHED})
_GIVEN_UP = move(_M.NO_OPERATION, from_={_M.UNMATCHED})
_UNMATCHED = move(_M.UNMATCHED)
_M_PENDING = in_states(_M.PENDING, column="m.state")
_M_UNMATCHED = in_states(_M.UNMATCHED, column="m.state")
_DELIVERED = move(_M.DELIVERED, sets="delivered_at = ?, last_error = NULL")
_SETTLED = {s: move(_M(s), from_={_M.PENDING}, sets="last_error = ?") for s in
            ("rejected", "filtered", "no_operation")}  # fmt: skip


def _classify(
    conn: sqlite3.Connection,
    row: tuple[Any, ...],
    matches: Matcher,
    when: float,
    matching: Matching,
) -> PushRow | Literal["unmatched", "filtered"]:
    mid, number, sender, text, sms_time, _state = row
    if number is None:
        return "unmatched"
    times = matching.times(float(sms_time))
    skew = matching.skew
    ops = {
        int(aid): (float(created), None if end is None else float(end), str(svc), bool(rent), n)
        for aid, created, end, svc, rent, n in conn.execute(
            _CANDIDATES, (number, max(times) + skew, min(times) - skew)
        )
    }
    chosen = pick([Window(aid, o[0], o[1]) for aid, o in ops.items()], times, skew)
    if chosen is None:
        return "unmatched"
    _created, _end, service, rent, op_number = ops[chosen]
    keep = rent or matches(service, sender, text)
    state = "pending" if keep else "filtered"
    # A push that exists already (an operator replayed a delivered message) is re-sent.
    conn.execute(
        "INSERT INTO pushes(message_id, activation_id, kind, state, created_at, done_at)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT(message_id, activation_id) DO UPDATE"
        " SET state = excluded.state, done_at = excluded.done_at",
        (mid, chosen, "rent" if rent else "sms", state, when, None if keep else when),
    )
    if not keep:
        conn.execute(_FILTERED, (f"filtered for {service}", mid))
        return "filtered"
    conn.execute(_MATCHED, (mid,))
    sms_id, attempts = conn.execute(
        "SELECT sms_id, attempts FROM pushes WHERE message_id = ? AND activation_id = ?",
        (mid, chosen),
    ).fetchone()
    return PushRow(sms_id, mid, chosen, rent, str(op_number), sender, text, attempts)


async def assign_pending(
    journal: Journal,
    limit: int,
    matches: Matcher,
    when: float,
    *,
    matching: Matching | None = None,
) -> Assigned:
    """Give each pending message without a pending push the operation it belongs to (by the
    SMS's time): a push row (``pending``, or ``filtered``), or ``unmatched``. Unmatched
    messages are looked at again when operations changed or the clock stepped, until their
    wait runs out; then they are ``no_operation`` for good. ``when`` (wall) is stored."""
    matching = matching or matching_for(journal)
    matching.begin_pass()
    recheck = matching.take_recheck()
    given_up = matching.given_up()

    def op(conn: sqlite3.Connection) -> Assigned:
        conn.executemany(_GIVEN_UP, [(mid,) for mid in given_up])
        rows = conn.execute(
            f"{_MESSAGES} WHERE {_M_PENDING} AND NOT EXISTS (SELECT 1 FROM pushes p"
            " WHERE p.message_id = m.id AND p.state = 'pending') ORDER BY m.id LIMIT ?",
            (limit,),
        ).fetchall()
        scanned = len(rows)
        if recheck is True:
            rows += conn.execute(f"{_MESSAGES} WHERE {_M_UNMATCHED} ORDER BY m.id")
        elif recheck:
            marks = ",".join("?" * len(recheck))
            rows += conn.execute(
                f"{_MESSAGES} WHERE {_M_UNMATCHED} AND m.number IN ({marks}) ORDER BY m.id",
                recheck,
            )
        pushes: list[PushRow] = []
        unmatched: list[int] = []
        settled: list[int] = []
        no_operation = filtered = revived = 0
        for row in rows:
            was_pending = row[5] == _M.PENDING
            result = _classify(conn, row, matches, when, matching)
            if result == "unmatched":
                unmatched.append(row[0])
                if was_pending:
                    conn.execute(_UNMATCHED, (row[0],))
                    no_operation += 1
                continue
            settled.append(row[0])
            if result == "filtered":
                filtered += was_pending
                continue
            assert isinstance(result, PushRow)
            revived += not was_pending
            pushes.append(result)
        return Assigned(pushes, no_operation, filtered, scanned, revived, unmatched, settled)

    try:
        result = await journal.execute(op)
    except BaseException:
        # Nothing was written: what this pass was to do is done by the next one.
        for mid in given_up:
            matching.waiting.setdefault(mid, 0.0)
        if isinstance(recheck, list):
            for number in recheck:
                matching.changed(number)
        else:
            matching.changed()
        raise
    for mid in result.unmatched:
        matching.unmatched(mid)
    for mid in result.settled:
        matching.waiting.pop(mid, None)
    if result.revived:
        journal.backlog += result.revived
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

    return await journal.execute(op)


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
    the pending state (the caller keeps the journal's backlog count exact).

    ``no_operation`` for an operation muxd expired locally also ends its window: Onlinesim
    has closed it, so later SMS on the number are not pushed to it."""
    message_state = "delivered" if state == "delivered" else state

    def op(conn: sqlite3.Connection) -> bool:
        conn.execute(
            "UPDATE pushes SET state = ?, result = ?, done_at = ?"
            " WHERE sms_id = ? AND state = 'pending'",
            (state, result[:500], when, push.sms_id),
        )
        if state == "no_operation":
            conn.execute(
                "UPDATE operations SET finished_at = ? WHERE activation_id = ?"
                " AND state = 'expired' AND finished_at IS NULL",
                (when, push.activation_id),
            )
        if message_state == "delivered":
            cur = conn.execute(_DELIVERED, (when, push.message_id))
        else:
            cur = conn.execute(_SETTLED[message_state], (result[:500], push.message_id))
        return cur.rowcount > 0

    return await journal.execute(op)
