"""Which numbers can be sold: GET_SERVICES counts and GET_NUMBER candidates (minus
the request's excluded prefixes), from the fleet's live ports and the in-memory :class:`Book`.

A number counts for service S when its port is sellable now, it is in no open operation (for
any service: one operation at a time, as Onlinesim requires) and it was not sold for S
before (status 3 lowers the count). Rent counts numbers in no open operation. ``any`` is the
sum over operators, per service. All of it is in memory: no journal read on the request path.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass

from muxd.ports import PortInfo
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.operations import Operation, V1State

ANY = "any"
RENT = "rent"
# How stale the list of sellable numbers may be for GET_NUMBER (see LiveNumbers).
LIVE_TTL = 1.0
# exceptionPhoneSet: at most this many prefixes, each ASCII digits with an optional "+" and
# spaces around (a prefix longer than 20 digits can't be one: E.164 has at most 15 digits).
MAX_MASKS = 10_000
SPACE = " \t\r\n"
MASK = re.compile(r"[ \t\r\n]*\+?[0-9]{1,20}[ \t\r\n]*")


class Book:
    """Open operations, sales and last use per number; the journal is the truth, this is its
    index (loaded at start, updated after each commit). ``holding`` covers the moment between
    choosing a number and the journal's answer, so two concurrent GET_NUMBERs never pick the
    same number. ``deadlines`` (monotonic) are the local expiries: only for reservations when
    ``v1.reservation_expiry`` is on, and for operations whose GET_NUMBER answer never left
    (``abandoned``: closed at once, whatever the setting)."""

    def __init__(self, state: V1State | None = None) -> None:
        self.open_by_number: dict[str, Operation] = {}
        self.open_by_id: dict[int, Operation] = {}
        self.sold: dict[str, set[str]] = {}
        self.last_used: dict[str, float] = {}
        self.holding: set[str] = set()
        self.deadlines: dict[int, float] = {}
        self.abandoned: set[int] = set()
        if state is not None:
            self.load(state)

    def load(self, state: V1State) -> None:
        """Replace the contents with what the journal holds."""
        self.open_by_number.clear()
        self.open_by_id.clear()
        self.sold.clear()
        self.deadlines.clear()
        self.abandoned.clear()
        self.last_used = dict(state.last_used)
        for op in state.open:
            self.opened(op)
        for number, service in state.sold:
            self.mark_sold(number, service)

    def busy(self, number: str) -> bool:
        return number in self.open_by_number or number in self.holding

    def opened(self, op: Operation, deadline: float | None = None) -> None:
        self.open_by_number[op.number] = op
        self.open_by_id[op.activation_id] = op
        self.last_used[op.number] = max(op.created_at, self.last_used.get(op.number, 0.0))
        if deadline is not None:
            self.deadlines[op.activation_id] = deadline

    def closed(self, activation_id: int) -> Operation | None:
        self.deadlines.pop(activation_id, None)
        self.abandoned.discard(activation_id)
        op = self.open_by_id.pop(activation_id, None)
        if op is not None and self.open_by_number.get(op.number) is op:
            del self.open_by_number[op.number]
        return op

    def mark_sold(self, number: str, service: str) -> None:
        self.sold.setdefault(number, set()).add(service)

    def unsold(self, number: str, service: str) -> None:
        services = self.sold.get(number)
        if services is not None:
            services.discard(service)
            if not services:
                del self.sold[number]

    def is_sold(self, number: str, service: str) -> bool:
        services = self.sold.get(number)
        return services is not None and service in services

    def due(self, now: float) -> list[int]:
        """Open operations whose local deadline (monotonic ``now``) passed."""
        return [aid for aid, deadline in self.deadlines.items() if deadline <= now]

    def next_expiry(self) -> float | None:
        return min(self.deadlines.values(), default=None)


@dataclass(frozen=True, slots=True)
class Live:
    """A sellable number as GET_SERVICES names it."""

    number: str  # +E.164
    country: str
    operator: str

    @property
    def digits(self) -> str:
        return self.number[1:]


def live_numbers(ports: Iterable[PortInfo], names: Names) -> list[Live]:
    """Sellable numbers right now, one entry per number (a number seen on two ports once)."""
    seen: dict[str, Live] = {}
    for info in ports:
        if not info.sellable or info.number is None or info.number in seen:
            continue
        seen[info.number] = Live(
            info.number, names.country(info.number, info.country_id), names.operator(info.operator)
        )
    return list(seen.values())


class LiveNumbers:
    """:func:`live_numbers`, grouped by country, least recently used first, re-read from the
    ports at most every ``ttl`` seconds.

    Reading 512 ports costs more than the rest of a GET_NUMBER; a port's state a moment old is
    as good as a fresh one (it may change right after the read anyway), and GET_SERVICES, which
    must never over-report, asks for a fresh read. Keeping each country's numbers in use
    order (:meth:`used` moves one to the back) lets GET_NUMBER take the first that fits
    instead of scanning them all.
    """

    def __init__(
        self,
        ports: Callable[[], Iterable[PortInfo]],
        names: Names,
        book: Book,
        *,
        ttl: float = LIVE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ports = ports
        self._names = names
        self._book = book
        self._ttl = ttl
        self._monotonic = monotonic
        self._read_at = -math.inf
        self.entries: list[Live] = []
        self._by_country: dict[str, OrderedDict[str, Live]] = {}

    def refresh(self, *, fresh: bool = False) -> LiveNumbers:
        now = self._monotonic()
        if fresh or now - self._read_at >= self._ttl:
            self.entries = live_numbers(self._ports(), self._names)
            last_used = self._book.last_used
            by_country: dict[str, OrderedDict[str, Live]] = {}
            for e in sorted(self.entries, key=lambda e: last_used.get(e.number, 0.0)):
                by_country.setdefault(e.country, OrderedDict())[e.number] = e
            self._by_country = by_country
            self._read_at = now
        return self

    def pool(self, country: str) -> Iterable[Live]:
        """One country's numbers, least recently used first."""
        found = self._by_country.get(country.strip().lower())
        return () if found is None else found.values()

    def used(self, entry: Live) -> None:
        found = self._by_country.get(entry.country)
        if found is not None and entry.number in found:
            found.move_to_end(entry.number)


def count_services(
    live: Iterable[Live],
    book: Book,
    services: Sequence[str],
    *,
    rent: bool,
    rent_only: bool = False,
) -> list[dict[str, object]]:
    """GET_SERVICES' ``countryList``: per country, per operator and ``any``, per service."""
    keys = [RENT] if rent_only else [*services, *([RENT] if rent else [])]
    table: dict[str, dict[str, dict[str, int]]] = {}
    for entry in live:
        operators = table.setdefault(entry.country, {ANY: dict.fromkeys(keys, 0)})
        counts = operators.setdefault(entry.operator, dict.fromkeys(keys, 0))
        if book.busy(entry.number):
            continue
        total = operators[ANY]
        for key in keys:
            if key != RENT and book.is_sold(entry.number, key):
                continue
            counts[key] += 1
            total[key] += 1
    out: list[dict[str, object]] = []
    for country in sorted(table):
        operators = table[country]
        ordered = {ANY: operators.pop(ANY)} | dict(sorted(operators.items()))
        out.append({"country": country, "operatorMap": ordered})
    return out


def parse_masks(value: object) -> tuple[str, ...]:
    """``exceptionPhoneSet`` -> digit prefixes. Integers (Onlinesim) and strings (SMSHub, with
    or without ``+``) are both accepted; anything else raises ValueError (a mask we can't read
    must not be ignored: the number it excludes could be handed out), and so do more than
    :data:`MAX_MASKS` of them (each one is tried against every candidate number)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("exceptionPhoneSet must be an array")
    if len(value) > MAX_MASKS:
        raise ValueError(f"exceptionPhoneSet has more than {MAX_MASKS} elements")
    out: list[str] = []
    for item in value:
        if isinstance(item, bool):
            raise ValueError(f"exceptionPhoneSet: bad element {_echo(item)}")
        if isinstance(item, int) and item > 0:
            out.append(str(item))
        elif isinstance(item, str) and MASK.fullmatch(item):
            out.append(item.strip(SPACE).lstrip("+"))
        else:
            raise ValueError(f"exceptionPhoneSet: bad element {_echo(item)}")
    return tuple(out)


def _echo(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def masked(number: str, masks: Sequence[str]) -> bool:
    return bool(masks) and number.lstrip("+").startswith(tuple(masks))


def _eligible(
    live: Iterable[Live],
    book: Book,
    *,
    operator: str,
    service: str,
    masks: tuple[str, ...],
    rent: bool,
    skip: Container[str] = (),
) -> Iterator[Live]:
    operator = operator.strip().lower()
    busy, sold = book.busy, book.sold
    for e in live:
        if operator != ANY and e.operator != operator:
            continue
        if busy(e.number) or e.number in skip:
            continue
        if not rent:
            services = sold.get(e.number)
            if services is not None and service in services:
                continue
        if masks and e.digits.startswith(masks):
            continue
        yield e


def choose(
    pool: Iterable[Live],
    book: Book,
    *,
    operator: str,
    service: str,
    masks: Sequence[str],
    rent: bool,
    skip: Container[str] = (),
) -> Live | None:
    """The number GET_NUMBER hands out: the first of ``pool`` (one country's numbers, least
    recently used first: spreads wear, and keeps a number that was just cancelled away from
    the next client while others are free) that fits."""
    found = _eligible(
        pool, book, operator=operator, service=service, masks=tuple(masks), rent=rent, skip=skip
    )
    return next(found, None)


def candidates(
    live: Iterable[Live],
    book: Book,
    *,
    country: str,
    operator: str,
    service: str,
    masks: Sequence[str],
    rent: bool,
) -> list[Live]:
    """Every number GET_NUMBER may hand out, in the order :func:`choose` prefers them."""
    country = country.strip().lower()
    in_country = (e for e in live if e.country == country)
    fits = _eligible(
        in_country, book, operator=operator, service=service, masks=tuple(masks), rent=rent
    )
    out = sorted(fits, key=lambda e: book.last_used.get(e.number, 0.0))
    return out
