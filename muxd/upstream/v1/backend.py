"""Where the v1 actions take their numbers from: the seam between the partner server's
request handling (parsing, authentication, answers, logs, metrics) and the state behind it.

One box alone uses the local backend (the journal and the in-memory book, in
:mod:`muxd.upstream.v1.server`); a box in a cluster uses the shared state in PostgreSQL
(:mod:`muxd.cluster.v1`). The handlers do not know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from muxd.upstream.v1.operations import FinishOutcome, Operation


@dataclass(frozen=True, slots=True)
class NumberRequest:
    """A GET_NUMBER, checked: ``service`` is a configured one (its configured spelling) or
    ``rent``; ``masks`` are digit prefixes never to hand out."""

    country: str
    operator: str
    service: str
    amount: float | None
    masks: tuple[str, ...]
    rent: bool
    # Seconds left, when the request was built, to answer in time (counted from when the
    # request's headers arrived); None: the backend's own deadline alone. An answer later than
    # this no longer reaches Onlinesim, so no number is reserved for it.
    within: float | None = None


class V1Backend(Protocol):
    async def country_list(self, *, rent_only: bool) -> list[dict[str, object]]:
        """GET_SERVICES' ``countryList``."""
        ...

    async def reserve(self, request: NumberRequest) -> Operation | None:
        """GET_NUMBER: the operation opened, or None (no number fits, or none can be handed
        out in time). Answers within the GET_NUMBER deadline."""
        ...

    async def finish(
        self, activation_id: int, status: int, amount: float | None, *, sells: bool
    ) -> tuple[FinishOutcome, Operation | None]:
        """FINISH_ACTIVATION, idempotent (see :func:`muxd.upstream.v1.operations.finish`).
        The first FINISH of an operation is credited to the earnings by the box holding its
        SIM: here for one box alone, in a cluster when the holder learns of it."""
        ...
