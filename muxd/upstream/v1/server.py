"""muxd's v1 partner server: Onlinesim calls it (GET_SERVICES, GET_NUMBER,
FINISH_ACTIVATION, for activations and for rent).

Routes (POST, plus ``GET /openapi.json``: the contract below): ``/`` takes every action from
the body's ``action``; the per-method paths ``/getServices``, ``/getNumber``,
``/finishActivation`` and ``/getServicesRent``, ``/getNumberRent``, ``/finishActivationRent``
take theirs from the path (an ``action`` in the body must agree). The rent paths imply rent;
on ``/`` rent is ``service: "rent"`` (GET_NUMBER, FINISH_ACTIVATION), and GET_SERVICES on ``/``
reports rent counts next to the services when rent is enabled (the shared-endpoint form of
GET_SERVICES (RENT)).

Every request: at most :data:`MAX_CONCURRENT_REQUESTS` are served at once (one more is
answered 503 with ``Retry-After`` at once, unread: nothing queues); the body is read within
:data:`BODY_TIMEOUT` (``Content-Encoding: gzip`` or a body starting with the gzip magic is
gunzipped, at most :data:`MAX_BODY_BYTES` either way), then authenticated, then dispatched.
Authentication: the body ``key`` must equal the partner's API key; an ``Authorization:
Bearer`` header, when present (required with ``require_bearer``), must too; both compared in
constant time. A key in the query string (``?apikey=``) is never looked at: a URL ends up in
the logs of every proxy on the way. A failed check changes nothing, is answered 401
``{"status": "ERROR", "error": ...}`` and logged at most once a minute with a count (so is a
body refused before its key was looked at: too large, late, not JSON). Answers
are JSON, UTF-8, gzip when the request accepts gzip. A request without User-Agent is served
and counted. Phone numbers in INFO lines are masked (``+7900***4567``).

TLS: :func:`tls_context` loads ``v1.tls_cert`` and ``v1.tls_key`` for the listener; without
them, a partner server listening beyond loopback needs a TLS reverse proxy in front.

Answers: 200 with ``status`` ``SUCCESS``, or ``NO_NUMBERS`` (``no_numbers_status``) when no
number fits; 200 ``ERROR``/``NO_OPERATION`` for a FINISH of an unknown activationId; 400 for a
body that is not a JSON object (or not UTF-8, or nested too deeply), an unknown action or a bad
field; 408 for a body not received within :data:`BODY_TIMEOUT`; 413 for a body over
:data:`MAX_BODY_BYTES` (refused on its Content-Length before any of
it is read, or once that much was read, or once gunzipping passes it); 404/405 for another path
or method; 500 when the journal fails. Every error answer is a short JSON ``{"status":
"ERROR", "error": ...}`` and changes nothing. Field types are Onlinesim's, and a quoted
decimal is taken for a number too (a reader that keeps 64-bit ids as strings). The contract
is published as OpenAPI 3.0 at ``GET /openapi.json`` (``openapi.json`` beside this module).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import importlib.resources
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from aiohttp import hdrs, web

from muxd.config import V1Config
from muxd.errors import JournalError
from muxd.log import mask_number
from muxd.ports import PortInfo
from muxd.store import Journal
from muxd.upstream.v1.backend import NumberRequest, V1Backend
from muxd.upstream.v1.counts import (
    ANY,
    RENT,
    Book,
    LiveNumbers,
    choose,
    count_services,
    parse_masks,
)
from muxd.upstream.v1.edge import (
    MAX_BODY_BYTES,
    MAX_CONCURRENT_REQUESTS,
    Admission,
    Fail,
    _echo,
    _error,
    json_errors,
    json_response,
    read_body,
    tls_context,
)
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.operations import FinishOutcome, Operation, Reservation, finish, reserve
from muxd.web_guard import FailedLogins

LOGGER = logging.getLogger(__name__)

# Onlinesim: a reservation lasts 15 minutes (FINISH_ACTIVATION normally comes when it ends).
RESERVATION: Final = 900.0
# Onlinesim cancels a GET_NUMBER not answered within 10 s; give up on the journal
# 2 s earlier so the "no number" answer still arrives in time.
GET_NUMBER_DEADLINE: Final = 8.0

GET_SERVICES: Final = "GET_SERVICES"
GET_NUMBER: Final = "GET_NUMBER"
FINISH_ACTIVATION: Final = "FINISH_ACTIVATION"
ACTIONS: Final = frozenset({GET_SERVICES, GET_NUMBER, FINISH_ACTIVATION})
# path -> (action, rent)
ROUTES: Final[dict[str, tuple[str | None, bool]]] = {
    "/": (None, False),
    "/getServices": (GET_SERVICES, False),
    "/getNumber": (GET_NUMBER, False),
    "/finishActivation": (FINISH_ACTIVATION, False),
    "/getServicesRent": (GET_SERVICES, True),
    "/getNumberRent": (GET_NUMBER, True),
    "/finishActivationRent": (FINISH_ACTIVATION, True),
}
# FINISH_ACTIVATION statuses: 3 sold; 1, 4, 5 release the number; 2 is deprecated and
# treated like 4 (closing beats an endless resend loop).
FINISH_STATUSES: Final = frozenset({1, 2, 3, 4, 5})
# Ours are below 2**63 (SQLite's INTEGER); anything larger can only be unknown.
MAX_ACTIVATION_ID: Final = 2**63 - 1
SOLD: Final = 3
# Prices are RUB: a sum outside [0, MAX_SUM] is nonsense, refused rather than journaled.
MAX_SUM: Final = 1_000_000_000
# Country, operator and service names are short words, JSON's spaces around ignored.
MAX_TEXT: Final = 100
SPACE: Final = " \t\r\n"
# A quoted number (some readers keep 64-bit ids as strings): plain ASCII decimals only, short
# enough that int() and float() never see anything odd ("²".isdigit() is true; int() has a
# digit limit; float() takes "1_0", "١٢" and "inf").
QUOTED_INT: Final = re.compile(r"[0-9]{1,20}")
QUOTED_SUM: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")
OPENAPI: Final = "openapi.json"

__all__ = ["MAX_BODY_BYTES", "ROUTES", "V1Handlers", "make_app", "tls_context"]


def _bytes(text: str) -> bytes:
    """UTF-8 for comparing keys; a header's undecodable bytes arrive as surrogates, which
    the strict codec would raise on."""
    return text.encode("utf-8", "surrogatepass")


def _sum(body: dict[str, Any], field: str = "sum") -> float | None:
    """An optional price: a number (or quoted decimal) within [0, MAX_SUM]; null is absent."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, str) and QUOTED_SUM.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(400, f"{field} must be a number", "bad_request")
    if not 0 <= value <= MAX_SUM:  # false for NaN and ±inf too; an int of any size compares
        raise _error(400, f"{field} must be within [0, {MAX_SUM}]", "bad_request")
    return float(value)


def _integer(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if isinstance(value, str) and QUOTED_INT.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(400, f"{field} must be an integer", "bad_request")
    return value


def _text(body: dict[str, Any], field: str, default: str | None = None) -> str:
    value = body.get(field, default)
    if not isinstance(value, str) or not value.strip(SPACE):
        raise _error(400, f"{field} must be a non-empty string", "bad_request")
    if len(value) > MAX_TEXT:
        raise _error(400, f"{field} is longer than {MAX_TEXT} characters", "bad_request")
    return value.strip(SPACE)


class LocalBackend:
    """One box alone: the actions over the in-memory :class:`Book` and the journal."""

    def __init__(self, handlers: V1Handlers) -> None:
        self._handlers = handlers

    async def country_list(self, *, rent_only: bool) -> list[dict[str, object]]:
        return self._handlers.count_local(rent_only=rent_only)

    async def reserve(self, request: NumberRequest) -> Operation | None:
        r = request
        return await self._handlers._reserve(
            r.country, r.operator, r.service, r.amount, r.masks, r.rent, within=r.within
        )

    async def finish(
        self, activation_id: int, status: int, amount: float | None, *, sells: bool
    ) -> tuple[FinishOutcome, Operation | None]:
        return await self._handlers._finish_local(activation_id, status, amount, sells=sells)


class V1Handlers:
    """The three actions; the state behind them is :attr:`backend` (by default the in-memory
    :class:`Book` and the journal, see :class:`LocalBackend`)."""

    def __init__(
        self,
        cfg: V1Config,
        api_key: str,
        journal: Journal,
        ports: Callable[[], Iterable[PortInfo]],
        book: Book,
        names: Names,
        *,
        clock: Callable[[], float],
        observer: V1Observer,
        id_bits: int = 63,
        status1_blocks: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] = lambda _number: None,
    ) -> None:
        self.cfg = cfg
        self._key = api_key.encode()
        self._journal = journal
        self.book = book
        self.live = LiveNumbers(ports, names, book)
        self._clock = clock
        self._monotonic = monotonic
        self._on_change = on_change  # a number's operations changed: its SMS look again
        self._observer = observer
        self._id_bits = id_bits
        self._status1_blocks = status1_blocks
        self._services = {s.lower(): s for s in cfg.services}
        self._failed_logins = FailedLogins(
            monotonic, what="v1: %d request(s) refused for a wrong or missing key", logger=LOGGER
        )
        self._bad_bodies = FailedLogins(
            monotonic, what="v1: %d unreadable request(s) refused", logger=LOGGER
        )
        self._query_key_seen = False
        self.admission = Admission(MAX_CONCURRENT_REQUESTS)
        self.last_request_at: float | None = None  # last authenticated call (wall, shown)
        self.last_request_mono: float | None = None  # the same on the monotonic clock (ages)
        self.backend: V1Backend = LocalBackend(self)

    # -- transport ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        arrived = self._monotonic()  # the headers are in; the body may still be on its way
        label = "unknown"
        if hdrs.USER_AGENT not in request.headers:
            self._observer.missing_user_agent()
        status, result = 200, "success"
        authenticated = False
        try:
            path_action, rent = ROUTES[request.path]
            body = await read_body(request)
            action = body.get("action", path_action)
            if isinstance(action, str) and action.upper() in ACTIONS:
                label = action.upper()
            self._authenticate(request, body)
            authenticated = True
            self.last_request_at = self._clock()
            self.last_request_mono = self._monotonic()
            if label == "unknown" or (path_action is not None and label != path_action):
                raise _error(
                    400, f"unknown action {_echo(action)} for {request.path}", "bad_request"
                )
            payload, result = await self._dispatch(label, body, rent, arrived=arrived)
        except Fail as fail:
            status, payload, result = fail.status, fail.payload, fail.result
            if status == 401:  # a guesser gets one line a minute, not one per guess
                self._failed_logins.failed(request.remote)
            elif not authenticated:  # nor does anyone sending junk
                self._bad_bodies.failed(f"{request.remote}: {fail}")
            else:
                LOGGER.info("v1 %s %s from %s: %s", label, status, request.remote, fail)
        except JournalError as exc:
            LOGGER.error("v1 %s: %s", label, exc)
            status, payload, result = 500, {"status": "ERROR", "error": "storage failure"}, "error"
        self._observer.request(label, result, time.perf_counter() - started)
        response = json_response(request, payload, status)
        if status in (408, 413):
            response.force_close()  # the rest of that body is not wanted on this connection
        return response

    def _authenticate(self, request: web.Request, body: dict[str, Any]) -> None:
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise _error(401, "ERROR_NO_KEY", "unauthorized")
        ok = hmac.compare_digest(_bytes(key), self._key)
        bearer = request.headers.get(hdrs.AUTHORIZATION)
        if bearer is not None:
            scheme, _, token = bearer.strip().partition(" ")
            ok &= scheme.lower() == "bearer" and hmac.compare_digest(
                _bytes(token.strip()), self._key
            )
        elif self.cfg.require_bearer:
            ok = False
        query_key = request.query.get("apikey")
        if (
            query_key is not None
            and not self._query_key_seen
            and hmac.compare_digest(_bytes(query_key), self._key)
        ):
            self._query_key_seen = True  # said once: the caller's URLs won't change
            LOGGER.warning(
                "v1: the API key came in a URL (?apikey=), where it is ignored: URLs end up"
                " in proxy logs, so consider the key leaked; it belongs in the body"
            )
        if not ok:
            raise _error(401, "ERROR_WRONG_KEY", "unauthorized")

    async def _dispatch(
        self, action: str, body: dict[str, Any], rent_path: bool, *, arrived: float | None = None
    ) -> tuple[dict[str, Any], str]:
        if action == GET_SERVICES:
            if rent_path and not self.cfg.rent:
                raise _error(400, "rent is not offered", "bad_request")
            country_list = await self.backend.country_list(rent_only=rent_path)
            return {"countryList": country_list, "status": "SUCCESS"}, "success"
        if action == GET_NUMBER:
            return await self.get_number(body, rent_path=rent_path, arrived=arrived)
        return await self.finish(body)

    # -- actions ------------------------------------------------------------------------------

    def get_services(self, *, rent_only: bool = False) -> dict[str, Any]:
        if rent_only and not self.cfg.rent:
            raise _error(400, "rent is not offered", "bad_request")
        return {"countryList": self.count_local(rent_only=rent_only), "status": "SUCCESS"}

    def count_local(self, *, rent_only: bool = False) -> list[dict[str, object]]:
        """GET_SERVICES' ``countryList`` of this box's ports and book."""
        live = self.live.refresh(fresh=True).entries
        return count_services(
            live, self.book, self.cfg.services, rent=self.cfg.rent, rent_only=rent_only
        )

    def _no_numbers(self) -> tuple[dict[str, Any], str]:
        status = self.cfg.no_numbers_status
        payload: dict[str, Any] = {"status": status}
        if status == "ERROR":
            payload["error"] = "NO_NUMBERS"
        return payload, "no_numbers"

    async def get_number(
        self, body: dict[str, Any], *, rent_path: bool = False, arrived: float | None = None
    ) -> tuple[dict[str, Any], str]:
        """``arrived``: when the request's headers came (monotonic); the GET_NUMBER deadline
        counts from then, so a body that took long leaves less time to reserve in."""
        country = _text(body, "country")
        operator = _text(body, "operator", ANY)
        service = _text(body, "service", RENT if rent_path else None)
        amount = _sum(body)
        try:
            masks = parse_masks(body.get("exceptionPhoneSet"))
        except ValueError as exc:
            raise _error(400, str(exc), "bad_request") from exc
        rent = rent_path or service.lower() == RENT
        if rent:
            if not self.cfg.rent:
                LOGGER.info("GET_NUMBER for rent, which is not offered")
                return self._no_numbers()
            service = RENT
        elif service.lower() not in self._services:
            LOGGER.info("GET_NUMBER for %s, which is not offered", _echo(service))
            return self._no_numbers()
        else:
            service = self._services[service.lower()]
        within = None if arrived is None else arrived + GET_NUMBER_DEADLINE - self._monotonic()
        op = await self.backend.reserve(
            NumberRequest(country, operator, service, amount, masks, rent, within)
        )
        if op is None:
            return self._no_numbers()
        LOGGER.info("operation %d: %s for %s", op.activation_id, mask_number(op.number), service)
        LOGGER.debug("operation %d: number %s", op.activation_id, op.number)
        number = int(op.number.lstrip("+"))
        return {"number": number, "activationId": op.activation_id, "status": "SUCCESS"}, "success"

    async def _reserve(
        self,
        country: str,
        operator: str,
        service: str,
        amount: float | None,
        masks: tuple[str, ...],
        rent: bool,
        *,
        within: float | None = None,
    ) -> Operation | None:
        loop = asyncio.get_running_loop()
        budget = GET_NUMBER_DEADLINE if within is None else min(within, GET_NUMBER_DEADLINE)
        if budget <= 0:
            LOGGER.error("GET_NUMBER: its body came too late to answer in time")
            return None
        deadline = loop.time() + budget
        pool = self.live.refresh().pool(country)
        tried: set[str] = set()
        while True:
            cand = choose(
                pool,
                self.book,
                operator=operator,
                service=service,
                masks=masks,
                rent=rent,
                skip=tried,
            )
            if cand is None:
                return None
            tried.add(cand.number)
            now = self._clock()
            hold = RESERVATION + self.cfg.reservation_grace
            expiry = self.cfg.reservation_expiry and not rent
            expires = now + hold if expiry else None
            res = Reservation(
                cand.number, service, cand.country, cand.operator, amount, rent, now, expires
            )
            self.book.holding.add(cand.number)
            self.live.used(cand)  # to the back now: the next request need not skip past it
            task = asyncio.ensure_future(reserve(self._journal, res, id_bits=self._id_bits))
            try:
                async with asyncio.timeout_at(deadline):
                    op = await asyncio.shield(task)
            except BaseException as exc:
                if task.done():
                    self.book.holding.discard(cand.number)
                else:
                    # The answer will not reach Onlinesim: release it as soon as it commits.
                    task.add_done_callback(functools.partial(self._abandoned, cand.number))
                if isinstance(exc, TimeoutError):
                    LOGGER.error("GET_NUMBER: the journal did not answer in time")
                    return None
                raise
            self.book.holding.discard(cand.number)
            if op is None:
                continue  # the journal knows better than the index: try the next one
            self.book.opened(op, self._monotonic() + hold if expiry else None)
            self._observer.operations_open(len(self.book.open_by_id))
            self._on_change(op.number)
            return op

    def _abandoned(self, number: str, task: asyncio.Future[Operation | None]) -> None:
        self.book.holding.discard(number)
        if task.cancelled() or task.exception() is not None:
            return
        op = task.result()
        if op is not None:
            LOGGER.warning("operation %d was never answered; releasing it", op.activation_id)
            self.book.opened(op, self._monotonic())  # closed by the next expiry check
            self.book.abandoned.add(op.activation_id)
            self._observer.operations_open(len(self.book.open_by_id))

    async def finish(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        activation_id = _integer(body, "activationId")
        status = _integer(body, "status")
        amount = _sum(body)
        if activation_id < 1:
            raise _error(400, "activationId must be at least 1", "bad_request")
        if status not in FINISH_STATUSES:
            raise _error(
                400, f"status must be one of 1, 3, 4, 5, got {_echo(status)}", "bad_request"
            )
        if activation_id > MAX_ACTIVATION_ID:  # well-formed, but never one of ours
            return {"status": "ERROR", "error": "NO_OPERATION"}, "unknown_operation"
        sells = status == SOLD or (status == 1 and self._status1_blocks)
        outcome, op = await self.backend.finish(activation_id, status, amount, sells=sells)
        if outcome == "unknown" or op is None:
            return {"status": "ERROR", "error": "NO_OPERATION"}, "unknown_operation"
        if outcome != "repeat":
            LOGGER.info("operation %d finished: status %d (%s)", activation_id, status, outcome)
        return {"status": "SUCCESS"}, "success"

    async def _finish_local(
        self, activation_id: int, status: int, amount: float | None, *, sells: bool
    ) -> tuple[FinishOutcome, Operation | None]:
        outcome, op = await finish(
            self._journal, activation_id, status, amount, self._clock(), sells=sells
        )
        if op is None:
            return outcome, op
        if outcome == "finished":
            self.book.closed(activation_id)
            self._observer.operations_open(len(self.book.open_by_id))
        if outcome in ("finished", "late"):
            self._on_change(op.number)
            self._observer.finished(op, status, amount)
        if outcome != "repeat" and sells and not op.rent:
            self.book.mark_sold(op.number, op.service)
        return outcome, op


@functools.cache
def openapi_document() -> bytes | None:
    """``openapi.json`` as shipped beside this module (None when an install left it out)."""
    try:
        return importlib.resources.files(__package__).joinpath(OPENAPI).read_bytes()
    except OSError:
        return None


async def serve_openapi(request: web.Request) -> web.StreamResponse:
    document = openapi_document()
    if document is None:
        return json_response(request, {"status": "ERROR", "error": f"no {OPENAPI}"}, 404)
    return web.Response(
        body=document, headers={hdrs.CONTENT_TYPE: "application/json; charset=utf-8"}
    )


def make_app(handlers: V1Handlers) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        handler_args={"auto_decompress": False},
        middlewares=[handlers.admission.middleware, json_errors],
    )
    for path in ROUTES:
        app.router.add_post(path, handlers.handle)
    app.router.add_get("/" + OPENAPI, serve_openapi)
    return app
