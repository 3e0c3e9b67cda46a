"""The states of a message and of a part, the moves allowed between them, and the SQL for both.

Every statement that reads or changes ``messages.state`` or ``parts.state`` is written with the
helpers below, so a state is spelled once (here) and a move not in :data:`MESSAGE_MOVES` is a
programming error caught where the statement is built (at import time for module constants).
The schema's CHECK constraints are generated from the same enums.

A message:

- ``pending``: waiting to be forwarded (API v2: shipped; API v1: matched to an operation and
  pushed). ``held``: its number is not listed upstream; back to pending when it is. Both count
  in the journal's backlog.
- ``delivered``: the upstream took it. ``parked``: set aside (after errors, by an operator, or
  held too long); kept and replayable.
- API v1 only: ``unmatched`` (no operation window covers it yet, still looked at again),
  ``no_operation`` (given up: no operation ever covered it), ``filtered`` (the operation's
  service does not match the text), ``rejected`` (Onlinesim refused the push).
- ``denied``: a local deny-list rule matched it; never forwarded unless replayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class MessageState(StrEnum):
    PENDING = "pending"
    HELD = "held"
    DELIVERED = "delivered"
    PARKED = "parked"
    UNMATCHED = "unmatched"
    NO_OPERATION = "no_operation"
    FILTERED = "filtered"
    REJECTED = "rejected"
    DENIED = "denied"


class PartState(StrEnum):
    WAITING = "waiting"  # a part of a concatenated SMS whose set is not complete
    ASSEMBLED = "assembled"  # part of a message
    STATUS_REPORT = "status_report"  # an SMS-STATUS-REPORT, kept for the record
    SUBMIT = "submit"  # an SMS-SUBMIT found in storage (our own outgoing or a draft)
    PARKED = "parked"  # did not decode; replayable with a newer decoder


M = MessageState

# Messages still to be forwarded: the journal's backlog.
BACKLOG = frozenset({M.PENDING, M.HELD})
# API v1 outcomes that end a message without a delivery (pruned after the retention).
SETTLED = frozenset({M.NO_OPERATION, M.FILTERED, M.REJECTED, M.DENIED})

# to-state -> the states a message may move to it from.
MESSAGE_MOVES: dict[MessageState, frozenset[MessageState]] = {
    M.PENDING: frozenset(
        # released when listed again; matched after all (v1); replayed by an operator
        {M.HELD, M.UNMATCHED, M.PARKED, M.DENIED, M.DELIVERED, M.PENDING}
    ),
    M.HELD: frozenset({M.PENDING}),
    M.DELIVERED: frozenset({M.PENDING}),
    M.PARKED: frozenset({M.PENDING, M.HELD}),
    M.UNMATCHED: frozenset({M.PENDING}),
    M.NO_OPERATION: frozenset({M.PENDING, M.UNMATCHED}),
    M.FILTERED: frozenset({M.PENDING, M.UNMATCHED}),
    M.REJECTED: frozenset({M.PENDING}),
    M.DENIED: frozenset({M.PENDING}),
}


def quoted(states: Iterable[StrEnum]) -> str:
    """``'a', 'b'`` in a stable order, for an IN list (the values are identifiers, not input)."""
    return ", ".join(f"'{s.value}'" for s in sorted(states, key=lambda s: s.value))


def in_states(*states: StrEnum, column: str = "state") -> str:
    """A condition: ``column`` is one of ``states``."""
    if len(states) == 1:
        return f"{column} = '{states[0].value}'"
    return f"{column} IN ({quoted(states)})"


def check(column: str, enum: type[StrEnum]) -> str:
    """The CHECK constraint of a state column."""
    return f"CHECK ({column} IN ({quoted(enum)}))"


def move(
    to: MessageState,
    *,
    from_: Iterable[MessageState] | None = None,
    sets: str = "",
    where: str = "id = ?",
) -> str:
    """``UPDATE messages SET state = <to>[, sets] WHERE <where> AND state IN (<from_>)``.

    ``from_`` defaults to every state allowed to move to ``to``; a state not allowed raises
    ValueError. Placeholders in ``sets`` come before those in ``where``."""
    allowed = MESSAGE_MOVES[to]
    sources = allowed if from_ is None else frozenset(from_)
    if not sources or not sources <= allowed:
        bad = ", ".join(sorted(s.value for s in sources - allowed)) or "nothing"
        raise ValueError(f"a message cannot move to {to.value} from {bad}")
    extra = f", {sets}" if sets else ""
    return (
        f"UPDATE messages SET state = '{to.value}'{extra} WHERE {where} AND {in_states(*sources)}"
    )


def move_part(to: PartState, *, sets: str = "", where: str = "id = ?") -> str:
    """``UPDATE parts SET state = <to>`` from ``waiting`` (the only state a part leaves)."""
    if to is not PartState.ASSEMBLED:
        raise ValueError(f"a part cannot move to {to.value}")
    extra = f", {sets}" if sets else ""
    return (
        f"UPDATE parts SET state = '{to.value}'{extra}"
        f" WHERE {where} AND {in_states(PartState.WAITING)}"
    )
