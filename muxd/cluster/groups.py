"""GET_NUMBER's reservations, grouped while one is in flight (the shipper's adaptive batching,
applied to PostgreSQL round trips).

When no reservation is in flight, a request goes to PostgreSQL at once, alone: no added
latency. Requests arriving while one is in flight wait for it to return, then go together:
one statement per group of equal :class:`~muxd.cluster.records.Criteria` (the groups of one
flight at once, each on its own pooled connection). Under a burst a hundred GET_NUMBERs cost a
few statements instead of a hundred, and the flights fill by themselves, one per round trip.

Each request keeps its own deadline. One that gives up while it waits (late, or cancelled) is
withdrawn: it is not reserved at all. One that gives up once its group was sent may still get
an operation; the caller then abandons it (:meth:`Ticket.settled` says when).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from muxd.cluster.records import Criteria, Operation

# send(criteria, [(request token, sum), ...]) -> each request's operation or None, in order.
Send = Callable[
    [Criteria, Sequence[tuple[uuid.UUID, float | None]]], Awaitable[list[Operation | None]]
]


@dataclass(eq=False)
class Ticket:
    """One GET_NUMBER in a group: its answer is :attr:`future`'s result."""

    token: uuid.UUID
    amount: float | None
    future: asyncio.Future[Operation | None]
    sent: bool = field(default=False)  # its group was taken into a flight

    def withdraw(self) -> bool:
        """Leave the group if it was not sent yet (True: it will never be reserved)."""
        if self.sent:
            return False
        self.future.cancel()
        return True

    def settled(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the statement that carried this request has ended, however
        it ended (its outcome is then read, so a failure is not reported as unretrieved)."""

        def done(future: asyncio.Future[Operation | None]) -> None:
            if not future.cancelled():
                future.exception()
            callback()

        self.future.add_done_callback(done)


class ReserveGroups:
    """One box's GET_NUMBER reservations: at most one flight at a time."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._waiting: dict[Criteria, list[Ticket]] = {}
        self._flight: asyncio.Task[None] | None = None

    @property
    def flying(self) -> bool:
        """Whether a flight is in progress."""
        return self._flight is not None

    @property
    def waiting(self) -> int:
        """Requests waiting for the flight in progress to return."""
        return sum(len(t) for t in self._waiting.values())

    def submit(self, criteria: Criteria, amount: float | None) -> Ticket:
        """Reserve a number for one request; sent now when no flight is in progress."""
        ticket = Ticket(uuid.uuid4(), amount, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(criteria, []).append(ticket)
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._fly(self._take()))
        return ticket

    async def close(self) -> None:
        """Stop: what waits for a flight is answered "no number" (never sent), and the flight
        in progress is waited for (each statement runs under the store's call timeout)."""
        waiting, self._waiting = self._waiting, {}
        for tickets in waiting.values():
            for ticket in tickets:
                if not ticket.future.done():
                    ticket.future.set_result(None)
        while self._flight is not None:
            await asyncio.shield(self._flight)

    def _take(self) -> dict[Criteria, list[Ticket]]:
        groups, self._waiting = self._waiting, {}
        out: dict[Criteria, list[Ticket]] = {}
        for criteria, tickets in groups.items():
            live = [t for t in tickets if not t.future.done()]  # the withdrawn stay out
            for ticket in live:
                ticket.sent = True
            if live:
                out[criteria] = live
        return out

    async def _fly(self, groups: dict[Criteria, list[Ticket]]) -> None:
        try:
            while groups:
                if len(groups) == 1:
                    ((criteria, tickets),) = groups.items()
                    await self._carry(criteria, tickets)
                else:
                    await asyncio.gather(*(self._carry(c, t) for c, t in groups.items()))
                groups = self._take()
        finally:
            self._flight = None
            for tickets in groups.values():  # cancelled mid-flight (the box stops)
                for ticket in tickets:
                    ticket.future.cancel()

    async def _carry(self, criteria: Criteria, tickets: list[Ticket]) -> None:
        """One group's statement; its outcome goes to each request (never raises but for
        the flight's own cancellation)."""
        try:
            found = await self._send(criteria, [(t.token, t.amount) for t in tickets])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to each request, whatever it is
            for ticket in tickets:
                if not ticket.future.done():
                    ticket.future.set_exception(exc)
            return
        for ticket, op in zip(tickets, found, strict=True):
            if not ticket.future.done():
                ticket.future.set_result(op)
