"""State of the Onlinesim v2 stand-in: published numbers, accepted SMS, request log, faults.

Everything here is synchronous except the ``wait_*`` helpers, so tests can inspect and change
the state directly. The HTTP layer lives in :mod:`muxd.sim.onlinesim`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from muxd.sim.onlinesim_model import Code, MessageSpec, NumberSpec, Rejected, check_unique

# Ids are arbitrary; start high like the spec's examples (1042) so they never look like indices.
FIRST_NUMBER_ID: Final = 1001
# Default bound of the wait_* helpers: ample on a loaded CI box, far below pytest-timeout.
WAIT_TIMEOUT_S: Final = 5.0
DEFAULT_FAULT_BODY: Final = "Service Unavailable"
MIN_FAULT_STATUS: Final = 200
MAX_FAULT_STATUS: Final = 599

ENDPOINTS: Final[frozenset[str]] = frozenset(
    {"checkWork", "sendNumbersOnline", "addNumber", "removeNumber", "addMessage", "addMessages"}
)
Via = Literal["addMessages", "addMessage"]


class NumberEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One number in the currently published list."""

    number: str
    country_id: int
    operator: int | None
    date_start: int | None
    port_id: str
    rent: int
    id: int


class AcceptedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One SMS the stand-in accepted."""

    date: str
    number: str  # resolved international number, even when the client sent the id
    number_id: int
    sent_as: str  # `number` exactly as sent: "+..." or an id string
    from_: str
    message: str
    via: Via
    received_at: float


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One request and what the stand-in answered."""

    method: str
    path: str
    endpoint: str | None  # None for a path that is no endpoint
    status: int
    reason: str  # "OK", an error code, "fault", "down" or "disabled"
    detail: str  # why, in words (never sent to the client)
    at: float


@dataclass
class Fault:
    """An injected failure, consumed one matching request at a time."""

    endpoint: str | None  # None matches every request
    status: int
    remaining: int
    body: str
    content_type: str
    processed: bool  # True: run the request normally, then answer with the fault anyway


class Onlinesim:
    """The Onlinesim side of Reseller API v2, as state that tests can read and change."""

    def __init__(
        self,
        api_key: str,
        *,
        clock: Callable[[], float] = time.time,
        first_id: int = FIRST_NUMBER_ID,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.api_key = api_key
        self.clock = clock
        self.numbers: dict[str, NumberEntry] = {}  # the current list, in the order received
        self.messages: list[AcceptedMessage] = []
        self.requests: list[RequestRecord] = []
        self.duplicates = 0  # messages (number, from, message, date) accepted more than once
        self.next_id = first_id
        self.ids: dict[str, int] = {}  # every number ever published -> its id (never reused)
        self.last_heartbeat: float | None = None  # last sendNumbersOnline or checkWork
        self.faults: list[Fault] = []
        self.down = False
        self.add_messages_disabled = False
        self.version = 0  # bumped on every change; wakes the wait_* helpers
        self._by_id: dict[int, str] = {}
        self._seen: set[tuple[str, str, str, str]] = set()
        self._waiters: set[asyncio.Future[None]] = set()

    # --- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        endpoint: str | None,
        status: int,
        count: int = 1,
        body: str = DEFAULT_FAULT_BODY,
        *,
        content_type: str = "text/html",
        processed: bool = False,
    ) -> None:
        """Answer the next ``count`` requests to ``endpoint`` (None: any) with ``status``.

        Faults apply before authentication, like a failing proxy in front of the server. With
        ``processed=True`` the request takes effect first (a lost reply), so an at-least-once
        client resends it; the ``duplicates`` counter shows the effect.
        """
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        if not MIN_FAULT_STATUS <= status <= MAX_FAULT_STATUS:
            raise ValueError(f"status {status} is not an HTTP status 200..599")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.faults.append(Fault(endpoint, status, count, body, content_type, processed))

    def take_fault(self, endpoint: str | None) -> Fault | None:
        """Consume one use of the first fault matching ``endpoint``."""
        for fault in self.faults:
            if fault.endpoint is None or fault.endpoint == endpoint:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def set_down(self, down: bool) -> None:
        """While down, every request is answered 503."""
        self.down = down

    def disable_add_messages(self, disabled: bool) -> None:
        """While disabled, addMessages answers 404, so clients fall back to addMessage."""
        self.add_messages_disabled = disabled

    # --- numbers --------------------------------------------------------------------------

    def id_of(self, number: str) -> int:
        """The number's stable id, allocated on first use."""
        number_id = self.ids.get(number)
        if number_id is None:
            number_id = self.next_id
            self.next_id += 1
            self.ids[number] = number_id
            self._by_id[number_id] = number
        return number_id

    def _entry(self, spec: NumberSpec) -> NumberEntry:
        return NumberEntry(
            number=spec.number,
            country_id=spec.country_id,
            operator=spec.operator,
            date_start=spec.date_start,
            port_id=spec.port_id,
            rent=spec.rent,
            id=self.id_of(spec.number),
        )

    def publish(self, specs: Iterable[NumberSpec]) -> dict[str, int | None]:
        """sendNumbersOnline: replace the list; answer ids, removed numbers mapped to None."""
        new = {spec.number: self._entry(spec) for spec in specs}
        ids: dict[str, int | None] = {number: entry.id for number, entry in new.items()}
        ids.update({number: None for number in self.numbers if number not in new})
        self.numbers = new
        self.heartbeat()
        return ids

    def check_add_number(self, spec: NumberSpec) -> None:
        """Raise if ``spec`` cannot join the current list (its port label is taken)."""
        others = [entry for number, entry in self.numbers.items() if number != spec.number]
        check_unique([*(self._as_spec(entry) for entry in others), spec])

    def add_number(self, spec: NumberSpec) -> int:
        """addNumber: add or update one number; answer its id."""
        self.check_add_number(spec)
        entry = self._entry(spec)
        self.numbers[spec.number] = entry
        self._changed()
        return entry.id

    def check_remove_number(self, number: str) -> None:
        """Stub choice: removing a number that is not listed is NO_NUMBER."""
        if number not in self.numbers:
            raise Rejected(Code.NO_NUMBER, f"{number} is not in the current list")

    def remove_number(self, number: str) -> None:
        """removeNumber: drop one number from the list (it keeps its id for later)."""
        self.check_remove_number(number)
        del self.numbers[number]
        self._changed()

    def heartbeat(self) -> None:
        self.last_heartbeat = self.clock()
        self._changed()

    @staticmethod
    def _as_spec(entry: NumberEntry) -> NumberSpec:
        return NumberSpec(
            number=entry.number,
            country_id=entry.country_id,
            operator=entry.operator,
            date_start=entry.date_start,
            port_id=entry.port_id,
            rent=entry.rent,
        )

    # --- messages -------------------------------------------------------------------------

    def resolve(self, spec: MessageSpec) -> NumberEntry:
        """The listed number ``spec`` is addressed to (by number or by id), else NO_NUMBER."""
        number = spec.number if spec.number_id is None else self._by_id.get(spec.number_id)
        entry = None if number is None else self.numbers.get(number)
        if entry is None:
            raise Rejected(Code.NO_NUMBER, f"{spec.number} is not in the current list")
        return entry

    def accept_messages(self, specs: Iterable[MessageSpec], via: Via) -> int:
        """Store a batch atomically: if any message is addressed to an unlisted number, none is.

        Returns how many were stored.
        """
        resolved = [(spec, self.resolve(spec)) for spec in specs]
        now = self.clock()
        for spec, entry in resolved:
            key = (entry.number, spec.from_, spec.message, spec.date)
            if key in self._seen:
                self.duplicates += 1
            self._seen.add(key)
            self.messages.append(
                AcceptedMessage(
                    date=spec.date,
                    number=entry.number,
                    number_id=entry.id,
                    sent_as=spec.number,
                    from_=spec.from_,
                    message=spec.message,
                    via=via,
                    received_at=now,
                )
            )
        self._changed()
        return len(resolved)

    # --- request log and waiting ----------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = WAIT_TIMEOUT_S,
        what: Callable[[], str] | None = None,
    ) -> None:
        """Return once ``predicate()`` holds, re-checking after every change.

        Raises TimeoutError after ``timeout`` seconds; ``what()`` describes the wait in its text.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError as exc:
            wanted = "condition" if what is None else what()
            raise TimeoutError(f"onlinesim stub: {wanted} not met in {timeout} s") from exc

    async def wait_for_messages(
        self,
        count: int,
        *,
        timeout: float = WAIT_TIMEOUT_S,
    ) -> None:
        """Wait until at least ``count`` messages were accepted."""
        await self.wait_until(
            lambda: len(self.messages) >= count,
            timeout=timeout,
            what=lambda: f"{count} messages (have {len(self.messages)})",
        )

    async def wait_for_requests(
        self,
        count: int,
        endpoint: str | None = None,
        *,
        timeout: float = WAIT_TIMEOUT_S,
    ) -> None:
        """Wait until at least ``count`` requests (to ``endpoint``, if given) were answered."""

        def seen() -> int:
            return sum(1 for r in self.requests if endpoint is None or r.endpoint == endpoint)

        await self.wait_until(
            lambda: seen() >= count,
            timeout=timeout,
            what=lambda: f"{count} requests to {endpoint or 'any endpoint'} (have {seen()})",
        )
