"""Wire schema and validation rules of the Onlinesim Reseller API v2 stand-in.

Pure code: request bodies go in, validated records come out, or :class:`Rejected` is raised
carrying the error code the spec names. No I/O and no clock: callers pass ``now``.

Onlinesim's v2 docs: 400 errors are a plain-text code, auth/route errors are
``{"response": CODE}``. The stand-in is deliberately
stricter than the spec where the spec is silent, so a muxd bug shows up as a rejected request;
each such choice is marked "stub choice" below.

How a malformed field maps to a code:

* ``number`` (not ``+`` then 7..16 digits, first digit not 0), ``country_id`` (not an integer
  1..999, a bool, or not the number's prefix): ``NUMBER_FORMAT_ERROR``.
* ``date_start`` (not an integer, a bool, before 2000-01-01, or more than a day ahead):
  ``ERROR_DATE``.
* anything else: a missing, misnamed, unknown, ``null`` or wrongly typed field, ``operator`` not
  5..6 digits, ``port_id`` empty or over 100 characters, ``rent`` not 0/1, an unknown ``test``
  value, invalid JSON: ``ERROR_PARAMS``.
* messages: ``date``, ``from`` and ``message`` problems are ``ERROR_PARAMS`` (the codes addMessage
  documents are only NO_NUMBER / ERROR_PARAMS / NUMBER_FORMAT_ERROR); a ``number`` that is
  neither ``+digits`` nor a numeric id is ``NUMBER_FORMAT_ERROR``.
* query strings (removeNumber, checkNumber, takeOffNumbers): an unknown or repeated parameter,
  a missing required one, a bad ``test`` or a ``sum`` that is not a plain non-negative decimal:
  ``ERROR_PARAMS``; a bad ``number``: ``NUMBER_FORMAT_ERROR``.
* saveConfig: ``disabled_service`` missing, or not an object whose keys and values are the
  same non-empty service names without surrounding spaces: ``ERROR_PARAMS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from http import HTTPStatus
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

# International format with "+"; E.164 allows at most 15 digits, the stand-in allows 16.
NUMBER_RE: Final = re.compile(r"\+[1-9][0-9]{6,15}")
# An Onlinesim number id as a string (addMessage: `number` may carry the id from the `ids` map).
NUMBER_ID_RE: Final = re.compile(r"[1-9][0-9]{0,17}")
DIGITS_RE: Final = re.compile(r"[0-9]+")

MIN_TIMESTAMP: Final = 946_684_800  # 2000-01-01T00:00:00Z; earlier dates are a clock bug
MAX_FUTURE_SKEW_S: Final = 86_400.0  # a timestamp may run at most a day ahead of our clock
COUNTRY_ID_MAX: Final = 999  # E.164 country calling codes have 1..3 digits
OPERATOR_MIN: Final = 10_000  # MCC+MNC: 3-digit MCC plus 2- or 3-digit MNC
OPERATOR_MAX: Final = 999_999
MAX_PORT_ID_LEN: Final = 100  # sendNumbersOnline's port_id

TestMode = Literal["test1", "test2"]
TEST_MODES: Final[frozenset[str]] = frozenset({"test1", "test2"})
# removeNumber takes its arguments from the query string; apikey is the key's alternative
# to the Bearer header.
REMOVE_QUERY_KEYS: Final[frozenset[str]] = frozenset({"number", "test", "apikey"})
# checkNumber and takeOffNumbers read the query string too. `test` is not documented for
# them; stub choice: accepted, with the meaning it has on the other endpoints.
CHECK_NUMBER_QUERY_KEYS: Final[frozenset[str]] = frozenset({"number", "test", "apikey"})
TAKE_OFF_QUERY_KEYS: Final[frozenset[str]] = frozenset({"sum", "test", "apikey"})
DEFAULT_TAKE_OFF_SUM: Final = "50"  # RUB
# stub choice: `sum` is a plain decimal ("50", "37.5"); no sign, exponent, NaN or spaces.
SUM_RE: Final = re.compile(r"[0-9]{1,9}(\.[0-9]{1,2})?")

T = TypeVar("T")


class Code(StrEnum):
    """Error codes put on the wire."""

    NUMBER_FORMAT_ERROR = "NUMBER_FORMAT_ERROR"
    ERROR_DATE = "ERROR_DATE"
    ERROR_PARAMS = "ERROR_PARAMS"
    NO_NUMBER = "NO_NUMBER"
    ERROR_NO_KEY = "ERROR_NO_KEY"
    ERROR_WRONG_KEY = "ERROR_WRONG_KEY"
    REQUEST_NOT_FOUND = "REQUEST_NOT_FOUND"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"  # 429: the rate_limit fault
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # stub choice: the spec names no code for 413


class Rejected(Exception):
    """A request the stand-in refuses: ``code`` goes on the wire, ``detail`` only to logs."""

    def __init__(self, code: Code, detail: str, *, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status


class NumberSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One validated item of sendNumbersOnline / addNumber, defaults applied."""

    number: str
    country_id: int
    operator: int | None
    date_start: int | None
    port_id: str  # defaults to the number
    rent: int  # 0 when not sent


class MessageSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One validated SMS of addMessage / addMessages; the number is not yet resolved."""

    date: str
    number: str  # as sent: "+<digits>" or an id string
    number_id: int | None  # set when `number` is an id string
    from_: str
    message: str


# --- wire structs -------------------------------------------------------------------------
# Fields typed `Any` carry their own error code and are checked by hand below; every other
# schema violation (msgspec.ValidationError) is ERROR_PARAMS.


class _NumberItem(msgspec.Struct, forbid_unknown_fields=True):
    number: Any  # -> NUMBER_FORMAT_ERROR
    country_id: Any  # -> NUMBER_FORMAT_ERROR
    operator: Annotated[int, Meta(ge=OPERATOR_MIN, le=OPERATOR_MAX)] | UnsetType = UNSET
    date_start: Any = UNSET  # -> ERROR_DATE
    port_id: Annotated[str, Meta(min_length=1, max_length=MAX_PORT_ID_LEN)] | UnsetType = UNSET
    rent: Literal[0, 1] | UnsetType = UNSET


class _AddNumberBody(_NumberItem):
    test: TestMode | UnsetType = UNSET


class _SendNumbersBody(msgspec.Struct, forbid_unknown_fields=True):
    numbers: list[_NumberItem]
    test: TestMode | UnsetType = UNSET


class _MessageItem(msgspec.Struct, forbid_unknown_fields=True, rename={"from_": "from"}):
    date: str
    number: str
    from_: Annotated[str, Meta(min_length=1)]
    message: Annotated[str, Meta(min_length=1)]


class _AddMessageBody(_MessageItem):
    test: TestMode | UnsetType = UNSET  # stub choice: accepted as on the other endpoints


class _AddMessagesBody(msgspec.Struct, forbid_unknown_fields=True):
    # stub choice: an empty batch is a client bug (it should not POST at all)
    messages: Annotated[list[_MessageItem], Meta(min_length=1)]
    test: TestMode | UnsetType = UNSET


_SEND_NUMBERS = msgspec.json.Decoder(_SendNumbersBody)
_ADD_NUMBER = msgspec.json.Decoder(_AddNumberBody)
_ADD_MESSAGE = msgspec.json.Decoder(_AddMessageBody)
_ADD_MESSAGES = msgspec.json.Decoder(_AddMessagesBody)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: catch it first
        raise Rejected(Code.ERROR_PARAMS, f"schema: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter itself
        raise Rejected(Code.ERROR_PARAMS, f"invalid JSON: {exc}") from exc


def _test_mode(value: TestMode | UnsetType) -> TestMode | None:
    return None if isinstance(value, UnsetType) else value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(value: object, where: str) -> str:
    """Return ``value`` if it is an international number, else raise NUMBER_FORMAT_ERROR."""
    if not isinstance(value, str) or NUMBER_RE.fullmatch(value) is None:
        raise Rejected(Code.NUMBER_FORMAT_ERROR, f"{where}: {value!r} is not '+' and 7..16 digits")
    return value


def _check_country_id(value: object, number: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= COUNTRY_ID_MAX:
        raise Rejected(Code.NUMBER_FORMAT_ERROR, f"{where}: {value!r} is not an integer 1..999")
    if not number.startswith(f"+{value}"):
        raise Rejected(Code.NUMBER_FORMAT_ERROR, f"{where}: {number} does not start with +{value}")
    return value


def timestamp_problem(value: int, now: float) -> str | None:
    """Why ``value`` (UNIX seconds) is implausible, or None."""
    if value <= MIN_TIMESTAMP:
        return f"{value} is not after 2000-01-01"
    if value > now + MAX_FUTURE_SKEW_S:
        return f"{value} is more than {MAX_FUTURE_SKEW_S:.0f} s in the future"
    return None


def _check_date_start(value: object, now: float, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Rejected(Code.ERROR_DATE, f"{where}: {value!r} is not an integer")
    problem = timestamp_problem(value, now)
    if problem is not None:
        raise Rejected(Code.ERROR_DATE, f"{where}: {problem}")
    return value


def _number_spec(item: _NumberItem, now: float, where: str) -> NumberSpec:
    number = check_number(item.number, f"{where}.number")
    country_id = _check_country_id(item.country_id, number, f"{where}.country_id")
    date_start = None
    if not isinstance(item.date_start, UnsetType):
        date_start = _check_date_start(item.date_start, now, f"{where}.date_start")
    return NumberSpec(
        number=number,
        country_id=country_id,
        operator=None if isinstance(item.operator, UnsetType) else item.operator,
        date_start=date_start,
        port_id=number if isinstance(item.port_id, UnsetType) else item.port_id,
        rent=0 if isinstance(item.rent, UnsetType) else item.rent,
    )


def check_unique(specs: Iterable[NumberSpec]) -> None:
    """Stub choice: a number, or a port label, listed twice is over-reporting: ERROR_PARAMS."""
    numbers: set[str] = set()
    ports: set[str] = set()
    for spec in specs:
        if spec.number in numbers:
            raise Rejected(Code.ERROR_PARAMS, f"{spec.number} is listed twice")
        if spec.port_id in ports:
            raise Rejected(Code.ERROR_PARAMS, f"port_id {spec.port_id!r} is used twice")
        numbers.add(spec.number)
        ports.add(spec.port_id)


def decode_send_numbers(body: bytes, now: float) -> tuple[list[NumberSpec], TestMode | None]:
    """sendNumbersOnline: the complete list, which replaces the previous one."""
    wire = _decode(_SEND_NUMBERS, body)
    specs = [_number_spec(item, now, f"numbers[{i}]") for i, item in enumerate(wire.numbers)]
    check_unique(specs)
    return specs, _test_mode(wire.test)


def decode_add_number(body: bytes, now: float) -> tuple[NumberSpec, TestMode | None]:
    """addNumber: one item, where ``rent`` is required."""
    wire = _decode(_ADD_NUMBER, body)
    if isinstance(wire.rent, UnsetType):
        raise Rejected(Code.ERROR_PARAMS, "rent is required by addNumber")
    return _number_spec(wire, now, "body"), _test_mode(wire.test)


def _message_spec(item: _MessageItem, now: float, where: str) -> MessageSpec:
    # stub choice: the spec allows "any format" but suggests UNIX seconds; muxd sends those, so
    # anything else (milliseconds, ISO text, an implausible time) is a muxd bug.
    if DIGITS_RE.fullmatch(item.date) is None:
        raise Rejected(Code.ERROR_PARAMS, f"{where}.date: {item.date!r} is not UNIX seconds")
    problem = timestamp_problem(int(item.date), now)
    if problem is not None:
        raise Rejected(Code.ERROR_PARAMS, f"{where}.date: {problem}")
    number_id = None
    if item.number.startswith("+"):
        check_number(item.number, f"{where}.number")
    elif NUMBER_ID_RE.fullmatch(item.number) is not None:
        number_id = int(item.number)
    else:
        raise Rejected(
            Code.NUMBER_FORMAT_ERROR,
            f"{where}.number: {item.number!r} is neither '+digits' nor a number id",
        )
    return MessageSpec(
        date=item.date,
        number=item.number,
        number_id=number_id,
        from_=item.from_,
        message=item.message,
    )


def decode_add_message(body: bytes, now: float) -> tuple[MessageSpec, TestMode | None]:
    """addMessage: one SMS."""
    wire = _decode(_ADD_MESSAGE, body)
    return _message_spec(wire, now, "body"), _test_mode(wire.test)


def decode_add_messages(body: bytes, now: float) -> tuple[list[MessageSpec], TestMode | None]:
    """addMessages: a batch of addMessage items."""
    wire = _decode(_ADD_MESSAGES, body)
    specs = [_message_spec(item, now, f"messages[{i}]") for i, item in enumerate(wire.messages)]
    return specs, _test_mode(wire.test)


def _parse_query(
    pairs: Iterable[tuple[str, str]], allowed: frozenset[str]
) -> tuple[dict[str, str], TestMode | None]:
    """Stub choice: an unknown or repeated parameter, or a ``test`` not test1/test2, is
    ERROR_PARAMS. Returns the parameters other than ``test`` and the test mode."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise Rejected(Code.ERROR_PARAMS, f"unknown query parameter {key!r}")
        if key in seen:
            raise Rejected(Code.ERROR_PARAMS, f"query parameter {key!r} given twice")
        seen[key] = value
    test = seen.pop("test", None)
    if test is None:
        return seen, None
    if test == "test1":
        return seen, "test1"
    if test == "test2":
        return seen, "test2"
    raise Rejected(Code.ERROR_PARAMS, f"test={test!r} is not test1/test2")


def _query_number(params: dict[str, str]) -> str:
    if "number" not in params:
        raise Rejected(Code.ERROR_PARAMS, "query parameter 'number' is missing")
    return check_number(params["number"], "query number")


def parse_remove_query(pairs: Iterable[tuple[str, str]]) -> tuple[str, TestMode | None]:
    """removeNumber: ``number`` (``+`` sent as ``%2B``) and optional ``test``.

    Stub choice: an unknown or repeated parameter is ERROR_PARAMS. A ``+`` that was not
    percent-encoded arrives as a space and fails as NUMBER_FORMAT_ERROR.
    """
    params, test = _parse_query(pairs, REMOVE_QUERY_KEYS)
    return _query_number(params), test


def parse_check_number_query(pairs: Iterable[tuple[str, str]]) -> tuple[str, TestMode | None]:
    """checkNumber: required ``number`` (``%2B``-encoded ``+``), optional ``test``."""
    params, test = _parse_query(pairs, CHECK_NUMBER_QUERY_KEYS)
    return _query_number(params), test


def parse_take_off_query(pairs: Iterable[tuple[str, str]]) -> tuple[Decimal, TestMode | None]:
    """takeOffNumbers: optional ``sum`` in RUB (default "50"), optional ``test``."""
    params, test = _parse_query(pairs, TAKE_OFF_QUERY_KEYS)
    text = params.get("sum", DEFAULT_TAKE_OFF_SUM)
    if SUM_RE.fullmatch(text) is None:
        raise Rejected(Code.ERROR_PARAMS, f"sum={text!r} is not a plain decimal like 37.5")
    return Decimal(text), test


# --- saveConfig ----------------------------------------------------------------------------


class _SaveConfigBody(msgspec.Struct, forbid_unknown_fields=True):
    disabled_service: dict[str, str]
    test: TestMode | UnsetType = UNSET  # stub choice: accepted as on the other endpoints


_SAVE_CONFIG = msgspec.json.Decoder(_SaveConfigBody)


def decode_save_config(body: bytes) -> tuple[list[str], TestMode | None]:
    """saveConfig: the whole blacklist, ``{"disabled_service": {"vkcom": "vkcom", ...}}``."""
    wire = _decode(_SAVE_CONFIG, body)
    for key, value in wire.disabled_service.items():
        if key != value:
            raise Rejected(
                Code.ERROR_PARAMS, f"disabled_service: key {key!r} differs from value {value!r}"
            )
        # stub choice: the docs' "telegram " (checkNumber) is a typo; a padded name is a client bug
        if not key or key != key.strip():
            raise Rejected(Code.ERROR_PARAMS, f"disabled_service: {key!r} is no service name")
    return list(wire.disabled_service), _test_mode(wire.test)


# --- replies of the optional endpoints ----------------------------------------------------


class CreatedAt(msgspec.Struct, frozen=True, kw_only=True):
    """checkNumber ``created_at``: a PHP DateTime as JSON."""

    date: str  # "2022-07-22 15:21:16.000000", server time zone
    timezone_type: int
    timezone: str


class CheckNumberReply(msgspec.Struct, frozen=True, kw_only=True):
    """checkNumber's 200 answer, field names and types as Onlinesim documents them."""

    id: int
    balance: float
    country_id: int
    errors: int
    number: str  # digits, no "+"
    port_id: str
    sum: float
    used_service: dict[str, str]
    banned_service: dict[str, str]
    banned: bool
    reseller_id: int
    rent: bool | None
    status: int
    status_text: str
    clearable: bool
    created_at: CreatedAt
    response: int = 1


class TakeOffItem(msgspec.Struct, frozen=True, kw_only=True):
    """One ``list`` item of takeOffNumbers: every field a string."""

    id: str
    number: str  # digits, no "+"
    sum: str  # RUB, two decimals
    country: str
