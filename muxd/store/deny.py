"""The deny-list's verdict in the journal: the one place a message is judged.

:func:`judge` runs inside the transaction that created the messages (a part stored, a set
released incomplete, a parked part replayed), before anything else can read them: a denied
message is never ``pending``, so neither the v2 shipper nor the v1 pusher (activations and
rent) ever selects it. It stays in the journal as ``denied``, with the rule in ``last_error``
(``denied by RULE``), is counted, listed and pruned like a delivered message, and an operator's
``muxd outbox replay`` makes it ``pending`` again: the verdict is not taken a second time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from muxd.deny import DenyList
from muxd.store.states import MessageState, in_states, move

DENIED = MessageState.DENIED.value
_PENDING = f"SELECT sender, text FROM messages WHERE id = ? AND {in_states(MessageState.PENDING)}"
_DENY = move(MessageState.DENIED, sets="last_error = ?")
_REASON = "denied by "


def reason(rule: str) -> str:
    """What ``last_error`` says of a message denied by ``rule``."""
    return _REASON + rule


def rule_of(last_error: str | None) -> str | None:
    """The rule named in a denied message's ``last_error``."""
    if last_error is None or not last_error.startswith(_REASON):
        return None
    return last_error[len(_REASON) :]


def judge(conn: sqlite3.Connection, deny: DenyList | None, ids: Iterable[int]) -> list[str]:
    """Deny the pending messages among ``ids`` that a rule matches; the rule of each one."""
    if not deny:
        return []
    assert deny is not None
    denied: list[str] = []
    for mid in ids:
        row = conn.execute(_PENDING, (mid,)).fetchone()
        if row is None:
            continue
        rule = deny.verdict(row[0], row[1])
        if rule is None:
            continue
        conn.execute(_DENY, (reason(rule), mid))
        denied.append(rule)
    return denied
