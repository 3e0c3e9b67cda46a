"""State of the Onlinesim v2 stand-in: published numbers, accepted SMS, request log, faults.

Everything here is synchronous except the ``wait_*`` helpers, so tests can inspect and change
the state directly. The HTTP layer lives in :mod:`muxd_sim.onlinesim`.

State a test may set directly for the optional endpoints (takeOffNumbers, checkNumber,
saveConfig): ``income[number]``
(RUB, what takeOffNumbers and checkNumber report), ``failed_operations[number]`` (checkNumber
``errors``; 3 or more make the number ``banned``), ``blacklist`` (what saveConfig replaces),
``rent_allowed``, ``reseller_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Final, Literal

import msgspec

from muxd_sim.changes import Changes
from muxd_sim.onlinesim_dialects import V2_DIALECTS, parse_dialects
from muxd_sim.onlinesim_faults import RandomErrors, Reset, TokenBucket, check_rate
from muxd_sim.onlinesim_model import (
    CheckNumberReply,
    Code,
    CreatedAt,
    MessageSpec,
    NumberSpec,
    Rejected,
    TakeOffItem,
    check_unique,
)

# Ids are arbitrary; start high like the spec's examples (1042) so they never look like indices.
FIRST_NUMBER_ID: Final = 1001
# Default bound of the wait_* helpers: ample on a loaded CI box, far below pytest-timeout.
WAIT_TIMEOUT_S: Final = 5.0
DEFAULT_FAULT_BODY: Final = "Service Unavailable"
MIN_FAULT_STATUS: Final = 200
MAX_FAULT_STATUS: Final = 599

ENDPOINTS: Final[frozenset[str]] = frozenset(
    {
        "checkWork",
        "sendNumbersOnline",
        "addNumber",
        "removeNumber",
        "addMessage",
        "addMessages",
        "takeOffNumbers",
        "checkNumber",
        "saveConfig",
    }
)
# checkNumber: a number is banned after 3 failed operations.
BAN_AFTER_FAILURES: Final = 3
STATUS_WORKING: Final = 1  # checkNumber status: listed and working
STATUS_NOT_ON_ACCOUNT: Final = 4  # checkNumber status: not on your account
STATUS_TEXTS: Final[dict[int, str]] = {
    STATUS_WORKING: "work",  # Onlinesim's example
    STATUS_NOT_ON_ACCOUNT: "not on account",  # stub choice: the spec shows no text for 4
}
# checkNumber created_at: PHP DateTime in the server's zone. Moscow has been UTC+3 all year
# since 2014; a fixed offset needs no tz database.
SERVER_TZ_NAME: Final = "Europe/Moscow"
SERVER_TZ: Final = timezone(timedelta(hours=3), SERVER_TZ_NAME)
PHP_TIMEZONE_TYPE_ID: Final = 3  # PHP's timezone_type for a zone identifier
DEFAULT_RESELLER_ID: Final = 241  # Onlinesim's checkNumber example
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
    # "OK", an error code (TOO_MANY_ATTEMPTS for the rate limit), "fault", "down", "disabled",
    # "error_rate" (a random 503) or "reset" (connection aborted, status 0: no answer)
    reason: str
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
        seed: int = 0,
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
        self.latency = 0.0  # seconds added before every answer
        self.resets: list[Reset] = []
        self.limiter: TokenBucket | None = None
        self.random_errors = RandomErrors(seed)
        self.dialects: frozenset[str] = frozenset()  # other readings of the docs; none: strict
        # optional endpoints (takeOffNumbers, checkNumber, saveConfig)
        self.income: dict[str, float] = {}  # number -> RUB earned
        self.failed_operations: dict[str, int] = {}  # number -> failed operations
        self.blacklist: set[str] = set()  # services disabled by saveConfig
        self.rent_allowed: bool | None = False  # checkNumber `rent`: the account may rent
        self.reseller_id = DEFAULT_RESELLER_ID
        self.listed_at: dict[str, float] = {}  # number -> when it joined the list (this time)
        self.version = 0  # bumped on every change; wakes the wait_* helpers
        self._by_id: dict[int, str] = {}
        self._seen: set[tuple[str, str, str, str]] = set()
        self._changes = Changes()

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
        self._check_endpoint(endpoint)
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

    def set_dialects(self, names: str | Iterable[str]) -> None:
        """Speak these dialects (:mod:`muxd_sim.onlinesim_dialects`): "a,b" or names."""
        self.dialects = parse_dialects(names, V2_DIALECTS)

    def set_down(self, down: bool) -> None:
        """While down, every request is answered 503."""
        self.down = down

    def disable_add_messages(self, disabled: bool) -> None:
        """While disabled, addMessages answers 404, so clients fall back to addMessage."""
        self.add_messages_disabled = disabled

    def set_latency(self, seconds: float) -> None:
        """Delay every answer (and every dropped connection) by ``seconds``."""
        self.latency = check_rate(seconds, "latency")

    @property
    def error_rate(self) -> float:
        return self.random_errors.rate

    def set_error_rate(self, rate: float) -> None:
        """Answer this fraction (0..1) of requests 503, drawn from the generator seeded at
        construction (``seed=``): the same seed and request sequence give the same answers."""
        self.random_errors.rate = check_rate(rate, "error_rate", upper=1.0)

    def reset_connections(
        self, count: int = 1, endpoint: str | None = None, *, processed: bool = False
    ) -> None:
        """Abort the TCP connection of the next ``count`` requests (to ``endpoint``, if given)
        without an HTTP answer; the client sees aiohttp's ServerDisconnectedError (or a reset).

        aiohttp's client resends an idempotent request (GET, DELETE) once after a dropped
        connection, so failing one such call takes two resets. ``processed=True`` runs the
        request first (a lost reply).
        """
        self._check_endpoint(endpoint)
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.resets.append(Reset(endpoint, count, processed))

    def take_reset(self, endpoint: str | None) -> Reset | None:
        """Consume one use of the first reset matching ``endpoint``."""
        for reset in self.resets:
            if reset.endpoint is None or reset.endpoint == endpoint:
                reset.remaining -= 1
                if reset.remaining == 0:
                    self.resets.remove(reset)
                return reset
        return None

    def rate_limit(self, max_per_second: float | None) -> None:
        """Answer 429 ``TOO_MANY_ATTEMPTS`` to requests over ``max_per_second`` (a token bucket
        on the stub's clock, burst ``max(max_per_second, 1)``, starting full); None: no limit."""
        self.limiter = None if max_per_second is None else TokenBucket(max_per_second, self.clock)

    def admit(self) -> bool:
        """Spend a rate-limit token; False: the request is over the limit."""
        return self.limiter is None or self.limiter.take()

    def random_error(self) -> bool:
        """Whether this request is one of the ``error_rate`` random 503s."""
        return self.random_errors.hit()

    @staticmethod
    def _check_endpoint(endpoint: str | None) -> None:
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")

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
        now = self.clock()
        for number in new:
            if number not in self.numbers:
                self.listed_at[number] = now
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
        if spec.number not in self.numbers:
            self.listed_at[spec.number] = self.clock()
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

    # --- optional endpoints (takeOffNumbers, checkNumber, saveConfig) ------------------------

    def number_info(self, number: str) -> CheckNumberReply:
        """checkNumber: status 1 for a listed number, else 4 ("not on your account").

        Stub choices: services on the blacklist show as ``used_service`` of every listed number
        (Onlinesim: "immediately marked USED"); a number not listed reports the id it had (0 if it
        never had one), country 0, port "", no services, never banned; ``created_at`` is
        ``date_start`` if sent, else when the number joined the list (now, if never).
        """
        entry = self.numbers.get(number)
        failures = self.failed_operations.get(number, 0)
        placed = self.listed_at.get(number, self.clock())
        if entry is not None and entry.date_start is not None:
            placed = entry.date_start
        status = STATUS_NOT_ON_ACCOUNT if entry is None else STATUS_WORKING
        return CheckNumberReply(
            id=self.ids.get(number, 0),
            balance=0.0,
            country_id=0 if entry is None else entry.country_id,
            errors=failures,
            number=number.removeprefix("+"),
            port_id="" if entry is None else entry.port_id,
            sum=self.income.get(number, 0.0),
            used_service={} if entry is None else {name: name for name in sorted(self.blacklist)},
            banned_service={},
            banned=entry is not None and failures >= BAN_AFTER_FAILURES,
            reseller_id=self.reseller_id,
            rent=self.rent_allowed,
            status=status,
            status_text=STATUS_TEXTS[status],
            clearable=True,
            created_at=_php_datetime(placed),
        )

    def take_off(self, min_sum: Decimal) -> list[TakeOffItem]:
        """takeOffNumbers: listed numbers whose income is at least ``min_sum`` RUB, list order."""
        found: list[TakeOffItem] = []
        for number, entry in self.numbers.items():
            earned = Decimal(f"{self.income.get(number, 0.0):.2f}")
            if earned >= min_sum:
                found.append(
                    TakeOffItem(
                        id=str(entry.id),
                        number=number.removeprefix("+"),
                        sum=str(earned),
                        country=str(entry.country_id),
                    )
                )
        return found

    def save_config(self, services: Iterable[str]) -> None:
        """saveConfig: replace the whole service blacklist."""
        self.blacklist = set(services)
        self._changed()

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
        self._changes.bump()

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
        await self._changes.wait_until(
            predicate,
            timeout=timeout,
            what=lambda: "onlinesim stub: " + ("condition" if what is None else what()),
        )

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


def _php_datetime(timestamp: float) -> CreatedAt:
    moment = datetime.fromtimestamp(timestamp, UTC).astimezone(SERVER_TZ)
    return CreatedAt(
        date=moment.strftime("%Y-%m-%d %H:%M:%S.%f"),
        timezone_type=PHP_TIMEZONE_TYPE_ID,
        timezone=SERVER_TZ_NAME,
    )
