"""Onlinesim Reseller API v2 client (muxd calls Onlinesim). Field names and types follow
Onlinesim's v2 docs exactly: ``number`` with ``+``, ``country_id`` integer, ``operator`` integer
MCC+MNC, ``date_start`` integer UNIX seconds, ``date`` a string of UNIX seconds.

Answers are read tolerantly (:mod:`muxd.upstream.readers`): ``response`` 1 or "1", ids as
integers or strings, errors as a bare code, a JSON envelope or a proxy's page, each reading
counted. Redirects are never followed: a 3xx is a failure ("redirect to ... not followed"), so
the key and the SMS text never go to another host.

checkWork is ``GET /api/resellers`` (the schema) or ``POST /api/resellers/checkWork`` (a page
the docs link); ``check_work_method`` picks one, and a 404/405 tries the other, remembered.

Test mode (``test="test1"``/``"test2"``): Onlinesim stores nothing, so an accepted
addMessage(s) is reported as a failure (status 0, :data:`TEST_MODE_REASON`): the SMS stay
pending and go out for real once test mode is switched off. Publishing works as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import msgspec

from muxd import __version__
from muxd.errors import UpstreamError
from muxd.upstream.backoff import parse_retry_after
from muxd.upstream.http1 import Answer
from muxd.upstream.http_client import HttpClient, HttpError
from muxd.upstream.learned import Learned
from muxd.upstream.readers import Reading, error_text, read_answer, read_ids
from muxd.upstream.transport import transport_for

LOGGER = logging.getLogger(__name__)

# Onlinesim publishes no timeout for partner calls; 30 s bounds a hung connection while leaving
# room for a slow answer to a large sendNumbersOnline list.
REQUEST_TIMEOUT = 30.0
# Answers that mean "no such endpoint/method here": try the other checkWork method.
NO_ENDPOINT = (404, 405)
CHECK_WORK_KEY = "upstream.check_work_method"
TEST_MODE_REASON = "test mode: Onlinesim stores nothing, the SMS stays pending"
USER_AGENT = f"muxd/{__version__}"


class NumberEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    number: str
    country_id: int
    operator: int | None = None
    date_start: int | None = None
    port_id: str | None = None
    rent: int = 0


class MessageItem(msgspec.Struct, frozen=True, rename={"sender": "from"}):
    date: str
    number: str
    sender: str
    message: str


class _AddMessages(msgspec.Struct, omit_defaults=True):
    """addMessages' body, encoded straight from the items (no intermediate dicts)."""

    messages: list[MessageItem]
    test: str | None = None


class _Reply(msgspec.Struct):
    response: int | str
    ids: dict[str, int | None] | None = None


def _no_reading(_field: str, _reading: str) -> None:
    pass


_ENCODER = msgspec.json.Encoder()


# --- optional endpoints (takeOffNumbers, checkNumber, saveConfig): replies decoded leniently ---
# Unknown fields are ignored; a documented field may be missing (it then reads as null / empty).
# Where a PHP server plausibly deviates from the documented type, the alternative is accepted
# too: an empty object serialised as [], money as a string, ids as integers.

SAVE_CONFIG_PATH = "/api/auth/me"  # saveConfig lives outside /api/resellers


class _Envelope(msgspec.Struct):
    response: int | str


class CheckNumberInfo(msgspec.Struct, kw_only=True):
    """checkNumber's answer; ``status`` 1 working, 2 queued, 4 not on the account,
    6 rent finished (replace the SIM)."""

    id: int | str  # documented integer; a digit string is read too
    number: str | int  # documented string; an integer is read too
    status: int | str
    status_text: str | None = None
    balance: float | str | None = None
    country_id: int | None = None
    errors: int | None = None
    port_id: str | None = None
    sum: float | str | None = None
    used_service: dict[str, str] | list[str] = msgspec.field(default_factory=dict)
    banned_service: dict[str, str] | list[str] = msgspec.field(default_factory=dict)
    banned: bool | None = None
    reseller_id: int | None = None
    rent: bool | int | None = None
    clearable: bool | None = None
    created_at: dict[str, Any] | None = None


class _TakeOffItem(msgspec.Struct):
    id: str | int
    number: str | int
    sum: str | float
    country: str | int


class _TakeOffReply(msgspec.Struct):
    items: list[_TakeOffItem] = msgspec.field(default_factory=list, name="list")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_CHECK_NUMBER = msgspec.json.Decoder(CheckNumberInfo)
_TAKE_OFF = msgspec.json.Decoder(_TakeOffReply)
_R = TypeVar("_R")


def _as_int(value: int | str) -> int | str:
    """A digit string as the integer it spells; anything else unchanged."""
    digits = isinstance(value, str) and value.strip().isascii() and value.strip().isdigit()
    return int(value) if digits else value


def _services(value: dict[str, str] | list[str]) -> dict[str, str]:
    """name -> slug; a list (PHP's empty object is []) maps each name to itself."""
    return value if isinstance(value, dict) else {name: name for name in value}


def _failure(exc: HttpError | TimeoutError) -> str:
    """What a request that got no answer says: the carrier's reason, or that time ran out."""
    if isinstance(exc, HttpError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# observer(endpoint, result, seconds): result is "ok", an HTTP status, or "error".
Observer = Callable[[str, str, float], None]


class V2Client:
    def __init__(
        self,
        http: aiohttp.ClientSession | HttpClient,
        base_url: str,
        api_key: str,
        *,
        test: str | None = None,
        observer: Observer | None = None,
        timeout: float = REQUEST_TIMEOUT,
        reading: Reading | None = None,
        check_work_method: str = "GET",
        learned: Learned | None = None,
    ) -> None:
        # Answers are a few bytes of JSON: asked for uncompressed; one compressed all the same
        # (a proxy that gzips everything) is still decompressed, or its acknowledgement would
        # be unreadable and the SMS sent again.
        headers = {
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
        }
        self._transport = transport_for(http, base_url, headers)
        self._timeout = timeout
        self._test = test
        self._observer = observer
        self._reading = reading or _no_reading
        self._check_work_method = check_work_method
        self._learned = learned or Learned()

    async def _call(
        self,
        method: str,
        endpoint: str,
        body: dict[str, Any] | None = None,
        *,
        encoded: bytes | None = None,
        **params: str,
    ) -> _Reply:
        """One request to ``/api/resellers/<endpoint>``: ``body`` as JSON (``test`` added in
        test mode), or ``encoded``, a JSON body already carrying it; with neither, ``test``
        goes in the query."""
        if body is not None and self._test is not None:
            body["test"] = self._test
        if body is None and encoded is None and self._test is not None:
            params["test"] = self._test
        path = f"/api/resellers{'/' + endpoint if endpoint else ''}"
        data = _ENCODER.encode(body) if body is not None else encoded
        name = endpoint or "checkWork"
        started = time.perf_counter()
        result = "error"
        try:
            resp = await self._transport.request(
                method, path, query=params or None, body=data, timeout=self._timeout
            )
            result = str(resp.status)
            text = self._text_of(resp, name)
            try:
                answer = read_answer(text, self._reading)  # takes any text
            except (ValueError, TypeError) as exc:  # a reader's bug: a bad reply, no crash
                raise UpstreamError(endpoint, resp.status, f"bad reply: {text}") from exc
            if not answer.ok and not (answer.echo and self._test is not None):
                result = "refused"
                raise UpstreamError(name, answer.status, answer.code)
            if not answer.ok:
                self._reading("response", "echo")  # test2: the request echoed back
            result = "ok"
            ids = answer.data.get("ids")
            return _Reply(1, None if ids is None else read_ids(ids, self._reading))
        except (HttpError, TimeoutError) as exc:
            raise UpstreamError(name, 0, _failure(exc)) from exc
        finally:
            if self._observer is not None:
                self._observer(name, result, time.perf_counter() - started)

    def _text_of(self, resp: Answer, endpoint: str) -> str:
        """A 200's body as text; any other status an UpstreamError (its Retry-After kept)."""
        text = self._read(resp)
        if resp.status != 200:
            retry_after = parse_retry_after(resp.header("retry-after"))
            raise UpstreamError(endpoint, resp.status, text, retry_after=retry_after)
        return text

    def _read(self, resp: Answer) -> str:
        """A 200's body as text (JSON: UTF-8); any other answer's as the code it carries (any
        shape, in the charset it declares)."""
        if resp.status == 200:
            return resp.body.decode("utf-8", "replace")
        return error_text(resp.status, resp.text(), resp.header("location"), self._reading)

    async def send_numbers_online(self, numbers: list[NumberEntry]) -> dict[str, int | None]:
        body = {"numbers": [msgspec.to_builtins(n) for n in numbers]}
        reply = await self._call("POST", "sendNumbersOnline", body)
        return reply.ids or {}

    async def check_work(self) -> None:
        """The heartbeat, by the configured (or learned) method; a 404/405 tries the other
        one, and the one that answered is remembered."""
        configured = self._check_work_method
        method = str(self._learned.get(CHECK_WORK_KEY, configured))
        try:
            await self._check_work_by(method)
        except UpstreamError as exc:
            if exc.status not in NO_ENDPOINT:
                raise
            other = "POST" if method == "GET" else "GET"
            await self._check_work_by(other)
            why = f"checkWork by {method} answered HTTP {exc.status}"
            self._learned.learn(CHECK_WORK_KEY, configured, other, why)
            method = other
        self._reading("check_work", method)

    async def _check_work_by(self, method: str) -> None:
        if method == "POST":
            await self._call("POST", "checkWork", {})
        else:
            await self._call("GET", "")

    async def add_number(self, entry: NumberEntry) -> dict[str, int | None]:
        body = msgspec.to_builtins(entry)
        body["rent"] = entry.rent  # required by addNumber even when 0
        reply = await self._call("POST", "addNumber", body)
        return reply.ids or {}

    async def remove_number(self, number: str) -> None:
        await self._call("DELETE", "removeNumber", number=number)

    async def add_messages(self, items: list[MessageItem]) -> None:
        body = _ENCODER.encode(_AddMessages(items, self._test))
        await self._call("POST", "addMessages", encoded=body)
        self._not_stored_in_test_mode("addMessages")

    async def add_message(self, item: MessageItem) -> None:
        await self._call("POST", "addMessage", msgspec.to_builtins(item))
        self._not_stored_in_test_mode("addMessage")

    def _not_stored_in_test_mode(self, endpoint: str) -> None:
        """In test mode Onlinesim accepted the request but stored nothing: not delivered."""
        if self._test is not None:
            raise UpstreamError(endpoint, 0, TEST_MODE_REASON)

    # --- optional endpoints (takeOffNumbers, checkNumber, saveConfig) ------------------------

    async def _fetch(
        self,
        method: str,
        path: str,
        endpoint: str,
        decoder: msgspec.json.Decoder[_R],
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> _R:
        """Like ``_call`` for any path under the base URL and any reply type: non-200, a reply
        that does not decode, or ``response`` other than 1 raise UpstreamError."""
        data = _ENCODER.encode(body) if body is not None else None
        started = time.perf_counter()
        result = "error"
        try:
            resp = await self._transport.request(
                method, path, query=params, body=data, timeout=self._timeout
            )
            result = str(resp.status)
            text = self._text_of(resp, endpoint)
            try:
                answer = read_answer(text, self._reading)
                if not answer.ok:
                    result = "refused"
                    raise UpstreamError(endpoint, answer.status, answer.code)
                reply = decoder.decode(text)
            except msgspec.DecodeError as exc:
                raise UpstreamError(endpoint, resp.status, f"bad reply: {text}") from exc
            result = "ok"
            return reply
        except (HttpError, TimeoutError) as exc:
            raise UpstreamError(endpoint, 0, _failure(exc)) from exc
        finally:
            if self._observer is not None:
                self._observer(endpoint, result, time.perf_counter() - started)

    async def check_number(self, number: str) -> dict[str, Any]:
        """checkNumber for ``number`` ("+..."): the number's details as plain data.

        Read-only, so the configured ``test`` mode is not sent (Onlinesim documents none here).
        """
        info = await self._fetch(
            "GET",
            "/api/resellers/checkNumber",
            "checkNumber",
            _CHECK_NUMBER,
            params={"number": number},
        )
        info.used_service = _services(info.used_service)
        info.banned_service = _services(info.banned_service)
        info.number = str(info.number)
        info.id, info.status = _as_int(info.id), _as_int(info.status)
        if not isinstance(info.id, int) or not isinstance(info.status, int):
            raise UpstreamError("checkNumber", 200, f"bad reply: id {info.id!r}, {info.status!r}")
        if isinstance(info.rent, int) and not isinstance(info.rent, bool):
            info.rent = bool(info.rent)
        result: dict[str, Any] = msgspec.to_builtins(info)
        return result

    async def take_off_numbers(self, sum_rub: str = "50") -> list[dict[str, str]]:
        """takeOffNumbers: listed numbers that earned at least ``sum_rub`` RUB, as
        ``{"id", "number" (no "+"), "sum", "country"}`` strings. Read-only: no ``test``."""
        reply = await self._fetch(
            "GET",
            "/api/resellers/takeOffNumbers",
            "takeOffNumbers",
            _TAKE_OFF,
            params={"sum": sum_rub},
        )
        return [
            {
                "id": str(item.id),
                "number": str(item.number),
                "sum": str(item.sum),
                "country": str(item.country),
            }
            for item in reply.items
        ]

    async def save_config(self, services: list[str]) -> None:
        """saveConfig: replace the whole service blacklist with ``services``.

        Changes state, so the configured ``test`` mode is sent in the body as elsewhere.
        """
        body: dict[str, Any] = {"disabled_service": {s: s for s in services}}
        if self._test is not None:
            body["test"] = self._test
        await self._fetch("POST", SAVE_CONFIG_PATH, "saveConfig", _ENVELOPE, body=body)
