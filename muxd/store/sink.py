"""The ports' sink: each PDU a port read goes into the journal through :class:`Intake`.

A port hands over one :class:`~muxd.ports.PartRead` and waits: the answer comes once the part
is committed, and only then does the port delete it from the modem. The answer says what the
port needs to know and nothing more: whether the part was new, whether it decodes (a part set
aside as undecodable is read a second time before it is deleted), and whether it completed a
message (the port counts its own SMS). Counting for the process (metrics, totals) goes through
the callbacks given at construction, called after the commit, once per new part.
"""

from __future__ import annotations

from collections.abc import Callable

from muxd.ports import ALREADY_STORED, PartRead, PartStored
from muxd.store.intake import PartIn
from muxd.store.journal import Journal
from muxd.store.states import PartState

__all__ = ["Intake"]


def _ignore_part(_state: PartState) -> None:
    pass


def _ignore_message() -> None:
    pass


class Intake:
    """A :class:`~muxd.ports.PartSink` over :meth:`Journal.put_part`.

    ``on_part(state)``: a new part was journaled in ``state`` (a :class:`PartState`).
    ``on_message()``: a new part completed a message. Neither is called for a
    part the journal already held (the same PDU read again after a crash or a failed delete).
    """

    def __init__(
        self,
        journal: Journal,
        *,
        on_part: Callable[[PartState], None] = _ignore_part,
        on_message: Callable[[], None] = _ignore_message,
    ) -> None:
        self.journal = journal
        self._on_part = on_part
        self._on_message = on_message

    async def __call__(self, part: PartRead, /) -> PartStored:
        result = await self.journal.put_part(
            PartIn(
                sim=part.sim,
                port=part.port,
                number=part.number,
                storage=part.storage,
                index=part.index,
                pdu=part.pdu,
                tpdu_length=part.tpdu_length,
                received_at=part.received_at,
            )
        )
        if not result.new:
            return ALREADY_STORED
        self._on_part(result.state)
        completed = result.message_id is not None
        if completed:
            self._on_message()
        decodable = result.state is not PartState.PARKED
        return PartStored(new=True, decodable=decodable, completed=completed)
