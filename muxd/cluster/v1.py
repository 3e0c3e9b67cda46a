"""The v1 actions through the cluster: any box answers for the whole fleet.

GET_SERVICES counts the live numbers of live boxes; GET_NUMBER reserves one in PostgreSQL
(atomically: never a number twice, exception masks and sales honoured) under a request id, and
when its answer cannot reach Onlinesim (the deadline passed, the request was cancelled, the
connection broke after the statement was sent) the reservation is abandoned, so a number never
stays held by an operation Onlinesim does not know. Requests that arrive while a reservation
is in flight go together when it returns, one statement per group of equal criteria
(:mod:`muxd.cluster.groups`); one that gives up while it waits is never reserved.
FINISH_ACTIVATION closes an operation whichever box opened it, idempotent.

PostgreSQL down or slow: GET_NUMBER answers "no numbers" at once (at most
:data:`RESERVE_DEADLINE`, well inside Onlinesim's 10 s), GET_SERVICES answers an empty list
(nothing can be sold while the reservations cannot be made, so offering this box's own numbers
would only draw GET_NUMBERs bound to fail), FINISH_ACTIVATION answers 503 (Onlinesim sends it
again until it succeeds).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Final

from muxd.cluster.gate import Gate, NotTried
from muxd.cluster.groups import ReserveGroups
from muxd.cluster.metrics import ClusterMetrics
from muxd.cluster.mirror import local_operation
from muxd.cluster.records import ClusterUnavailable, Criteria
from muxd.cluster.records import Operation as SharedOperation
from muxd.cluster.store import ClusterStore
from muxd.config import V1Config
from muxd.upstream.v1.backend import NumberRequest
from muxd.upstream.v1.counts import ANY, RENT
from muxd.upstream.v1.edge import Fail
from muxd.upstream.v1.operations import FinishOutcome, Operation

LOGGER = logging.getLogger(__name__)

# GET_NUMBER gives up on PostgreSQL after this long and answers "no numbers": Onlinesim
# cancels a GET_NUMBER not answered within 10 s.
RESERVE_DEADLINE: Final = 5.0
# Onlinesim's reservation: 15 minutes (plus v1.reservation_grace), as for one box alone.
RESERVATION: Final = 900.0


class ClusterBackend:
    """The :class:`muxd.upstream.v1.backend.V1Backend` of a box in a cluster."""

    def __init__(
        self,
        store: ClusterStore,
        cfg: V1Config,
        gate: Gate,
        metrics: ClusterMetrics,
        *,
        abandon: Callable[[uuid.UUID], None],
        deadline: float = RESERVE_DEADLINE,
    ) -> None:
        self._store = store
        self._cfg = cfg
        self._gate = gate
        self._metrics = metrics
        self._abandon = abandon  # queue a request's reservation for release
        self.deadline = deadline
        self.hold = RESERVATION + cfg.reservation_grace
        self.enabled = False  # until the box is in the cluster's database (migrated)
        self.groups = ReserveGroups(self._send)

    async def _send(
        self, criteria: Criteria, requests: Sequence[tuple[uuid.UUID, float | None]]
    ) -> list[SharedOperation | None]:
        """One group's reservation statement (see :mod:`muxd.cluster.groups`)."""
        return await self._gate.run(
            "reserve", lambda: self._store.reserve_group(criteria, requests, hold=self.hold)
        )

    async def close(self) -> None:
        """Wait for the reservations in flight (the box stops)."""
        await self.groups.close()

    async def country_list(self, *, rent_only: bool) -> list[dict[str, object]]:
        cfg = self._cfg
        if not self.enabled:
            return []
        try:
            counts = await self._gate.run(
                "services", lambda: self._store.service_counts(cfg.services, rent=cfg.rent)
            )
        except ClusterUnavailable:
            return []
        keys = [RENT] if rent_only else [*cfg.services, *([RENT] if cfg.rent else [])]
        out: list[dict[str, object]] = []
        for country in sorted(counts):
            total = dict.fromkeys(keys, 0)
            operators: dict[str, dict[str, int]] = {}
            for operator in sorted(counts[country]):
                free = counts[country][operator]
                row = {k: free.get(k, 0) for k in keys}
                operators[operator] = row
                for k in keys:
                    total[k] += row[k]
            out.append({"country": country, "operatorMap": {ANY: total} | operators})
        return out

    async def reserve(self, request: NumberRequest) -> Operation | None:
        r = request
        if not self.enabled:
            self._metrics.reservations.labels("unavailable").inc()
            return None
        deadline = self.deadline if r.within is None else min(r.within, self.deadline)
        if r.within is not None and r.within <= 0:
            # Its body came too late: an answer would not reach Onlinesim in time.
            LOGGER.error("GET_NUMBER: its body came too late to answer in time")
            self._metrics.reservations.labels("unavailable").inc()
            return None
        if self._gate.up is False and self.groups.flying:
            # PostgreSQL is known to be down and the flight in progress is finding out whether
            # it is back: as for any call then (the gate), the others answer at once.
            self._metrics.reservations.labels("unavailable").inc()
            return None
        criteria = Criteria.of(r.country, r.operator, r.service, r.masks, r.rent)
        ticket = self.groups.submit(criteria, r.amount)
        try:
            async with asyncio.timeout(deadline):
                found = await asyncio.shield(ticket.future)
        except NotTried:
            self._metrics.reservations.labels("unavailable").inc()
            return None
        except ClusterUnavailable:
            # The statement may have committed before the connection broke: release it.
            self._metrics.reservations.labels("unavailable").inc()
            self._abandon(ticket.token)
            return None
        except BaseException as exc:
            # Late, or the request was cancelled: its answer will not reach Onlinesim. Still
            # waiting for its group to go: it never will. Sent: release what it gets.
            if not ticket.withdraw():
                ticket.settled(lambda: self._abandon(ticket.token))
            if isinstance(exc, TimeoutError):
                # Said once per outage (the gate logs changes of state, not each request).
                self._gate.failed(f"GET_NUMBER: no answer within {deadline:.1f} s")
                self._metrics.reservations.labels("unavailable").inc()
                return None
            raise
        if found is None:
            self._metrics.reservations.labels("no_numbers").inc()
            return None
        self._metrics.reservations.labels("reserved").inc()
        LOGGER.debug("operation %d: number on box %s", found.activation_id, found.box)
        return local_operation(found)

    async def finish(
        self, activation_id: int, status: int, amount: float | None, *, sells: bool
    ) -> tuple[FinishOutcome, Operation | None]:
        if not self.enabled:
            raise Fail(503, {"status": "ERROR", "error": "TRY_AGAIN"}, "error")
        try:
            outcome, found = await self._gate.run(
                "finish", lambda: self._store.finish(activation_id, status, amount, sells=sells)
            )
        except ClusterUnavailable as exc:
            raise Fail(503, {"status": "ERROR", "error": "TRY_AGAIN"}, "error") from exc
        return outcome, None if found is None else local_operation(found)
