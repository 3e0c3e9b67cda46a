"""A local stand-in for Onlinesim's Reseller API v2, served by aiohttp.

muxd's end-to-end tests and ``muxd demo`` point muxd's v2 client at it. It is strict where
Onlinesim's v2 docs describe the protocol (errors, authentication, endpoints), so a muxd bug shows
up as a rejected request in :attr:`Onlinesim.requests` and as a WARNING log line.

Order of checks for every request (base URL = the server root):

0. ``set_latency(s)``: wait ``s`` seconds first. ``reset_connections(n)``: abort the TCP
connection without an answer (``processed=True``: after step 7). 1. ``set_down(True)``: 503.
2. ``rate_limit(r)``: 429 ``TOO_MANY_ATTEMPTS`` over ``r`` requests per second. 3. An injected
fault (:meth:`Onlinesim.fail_next`) matching the endpoint: its status and body (before
authentication, like a failing proxy); else ``set_error_rate(p)``: 503 with probability ``p``
(seeded). 4. A path outside ``/api/resellers`` and ``/api/auth/me``: 404; an unknown method or
path under the former, or a method other than POST on the latter: 405 ``{"response":
"REQUEST_NOT_FOUND"}`` (routing precedes authentication).
5. Authentication: 401 ``ERROR_NO_KEY`` / ``ERROR_WRONG_KEY``. 6.
``disable_add_messages(True)``: addMessages answers 404. 7. The endpoint: 400 with a
``text/html`` error code, 413 for a body over :data:`MAX_BODY_BYTES`, or 200
``{"response": 1, ...}``.

Endpoints: ``GET /api/resellers`` (checkWork), ``POST .../sendNumbersOnline``, ``POST
.../addNumber``, ``DELETE .../removeNumber?number=%2B...``, ``POST .../addMessage``, ``POST
.../addMessages``, ``GET .../takeOffNumbers?sum=50``, ``GET .../checkNumber?number=%2B...``
and ``POST /api/auth/me`` (saveConfig). Field rules: :mod:`muxd_sim.onlinesim_model`; state and
fault injection: :mod:`muxd_sim.onlinesim_state`, :mod:`muxd_sim.onlinesim_faults`; other
readings of the docs (``Onlinesim.set_dialects``): :mod:`muxd_sim.onlinesim_dialects`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import zlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import IO, Final, NamedTuple

import msgspec
from aiohttp import hdrs, web

from muxd_sim.onlinesim_dialects import v2_error, v2_payload, v2_refusal, v2_route_key
from muxd_sim.onlinesim_model import (
    Code,
    Rejected,
    TestMode,
    decode_add_message,
    decode_add_messages,
    decode_add_number,
    decode_save_config,
    decode_send_numbers,
    parse_check_number_query,
    parse_remove_query,
    parse_take_off_query,
)
from muxd_sim.onlinesim_state import (
    ENDPOINTS,
    WAIT_TIMEOUT_S,
    AcceptedMessage,
    Fault,
    NumberEntry,
    Onlinesim,
    RequestRecord,
)

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "MAX_BODY_BYTES",
    "SAVE_CONFIG_PATH",
    "WAIT_TIMEOUT_S",
    "AcceptedMessage",
    "Code",
    "NumberEntry",
    "Onlinesim",
    "RequestRecord",
    "ServedStub",
    "make_app",
    "run_stub",
    "serve",
]

LOGGER = logging.getLogger(__name__)

API_PREFIX: Final = "/api/resellers"
SAVE_CONFIG_PATH: Final = "/api/auth/me"  # saveConfig lives outside API_PREFIX
# Limit on a request body, before and after gzip decoding; a larger one is answered 413 (stub
# choice: the spec names no limit, and muxd's batches are far smaller).
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
# How long runner.cleanup() lets in-flight requests finish; the stub answers in microseconds.
SHUTDOWN_TIMEOUT_S: Final = 2.0
# run_stub(record_path=...): the recorder re-arms its wait this often (it wakes on every change).
RECORD_WAIT_S: Final = 3600.0
# The app decodes gzip itself (aiohttp's auto_decompress is off), to answer a corrupt body 400.
CONTENT_ENCODINGS: Final[frozenset[str]] = frozenset({"identity", "gzip", "x-gzip"})
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and trailer
JSON_CHARSETS: Final[frozenset[str]] = frozenset({"utf-8", "utf8"})
# Auth and routing errors are a JSON envelope; validation errors are a bare text/html code.
_JSON_ERROR_STATUSES: Final[frozenset[int]] = frozenset(
    {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.METHOD_NOT_ALLOWED}
)

_ENCODER = msgspec.json.Encoder()

# A handler returns the JSON payload of its 200 answer and a summary for the log.
_Reply = tuple[object, str]
_Handler = Callable[[Onlinesim, web.Request], Awaitable[_Reply]]
_OK: Final = {"response": 1}
# Reasons logged at INFO: accepted requests, and answers a test injected on purpose.
_INFO_REASONS: Final[frozenset[str]] = frozenset(
    {"OK", "fault", "down", "disabled", "reset", "error_rate", Code.TOO_MANY_ATTEMPTS.value}
)


class ServedStub(NamedTuple):
    """What :func:`serve` started; ``await runner.cleanup()`` stops it."""

    runner: web.AppRunner
    port: int


# --- endpoints ----------------------------------------------------------------------------


def _too_large(what: str) -> Rejected:
    return Rejected(
        Code.PAYLOAD_TOO_LARGE,
        f"{what} over {MAX_BODY_BYTES} bytes",
        status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def _gunzip(data: bytes) -> bytes:
    """Undo ``Content-Encoding: gzip``; ERROR_PARAMS for a corrupt, truncated or padded body."""
    decompressor = zlib.decompressobj(GZIP_WBITS)
    try:
        plain = decompressor.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise Rejected(Code.ERROR_PARAMS, f"body is not valid gzip: {exc}") from exc
    if len(plain) > MAX_BODY_BYTES:
        raise _too_large("gunzipped body")
    if not decompressor.eof:
        raise Rejected(Code.ERROR_PARAMS, "gzip body is truncated")
    if decompressor.unused_data:
        # stub choice: multi-member gzip is legal but no client of ours produces it
        raise Rejected(Code.ERROR_PARAMS, "data after the end of the gzip stream")
    return plain


async def _read_json(request: web.Request) -> bytes:
    """The JSON request body, gunzipped; ERROR_PARAMS unless it is labelled JSON."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    if content_type is None or request.content_type != "application/json":
        raise Rejected(Code.ERROR_PARAMS, f"Content-Type {content_type!r} is not application/json")
    charset = request.charset
    if charset is not None and charset.lower() not in JSON_CHARSETS:
        raise Rejected(Code.ERROR_PARAMS, f"charset {charset!r} is not utf-8")
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise Rejected(Code.ERROR_PARAMS, f"Content-Encoding {encoding!r} is not gzip")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large("body") from exc
    return data if encoding == "identity" else _gunzip(data)


def _test_reply(test: TestMode, request_payload: object) -> dict[str, object]:
    """Test modes, stub choice for unpublished shapes: test1 {"response":1}; test2 adds the echo."""
    if test == "test1":
        return dict(_OK)
    return {"response": 1, "request": request_payload}


async def _check_work(stub: Onlinesim, request: web.Request) -> _Reply:
    stub.heartbeat()
    return _OK, "heartbeat"


async def _send_numbers_online(stub: Onlinesim, request: web.Request) -> _Reply:
    body = await _read_json(request)
    specs, test = decode_send_numbers(body, stub.clock())
    if test is not None:
        return _test_reply(test, msgspec.json.decode(body)), f"{test}: {len(specs)} numbers valid"
    ids = stub.publish(specs)
    removed = sum(1 for number_id in ids.values() if number_id is None)
    return {"response": 1, "ids": ids}, f"{len(specs)} numbers listed, {removed} removed"


async def _add_number(stub: Onlinesim, request: web.Request) -> _Reply:
    body = await _read_json(request)
    spec, test = decode_add_number(body, stub.clock())
    stub.check_add_number(spec)
    if test is not None:
        return _test_reply(test, msgspec.json.decode(body)), f"{test}: {spec.number} valid"
    number_id = stub.add_number(spec)
    return {"response": 1, "ids": {spec.number: number_id}}, f"added {spec.number} ({number_id})"


async def _remove_number(stub: Onlinesim, request: web.Request) -> _Reply:
    number, test = parse_remove_query(request.query.items())
    stub.check_remove_number(number)
    if test is not None:
        echo = {key: value for key, value in request.query.items() if key != "apikey"}
        return _test_reply(test, echo), f"{test}: removing {number} is valid"
    stub.remove_number(number)
    return _OK, f"removed {number}"


async def _add_message(stub: Onlinesim, request: web.Request) -> _Reply:
    body = await _read_json(request)
    spec, test = decode_add_message(body, stub.clock())
    stub.resolve(spec)
    if test is not None:
        return _test_reply(test, msgspec.json.decode(body)), f"{test}: message valid"
    stub.accept_messages([spec], "addMessage")
    return _OK, f"1 message to {spec.number}"


async def _add_messages(stub: Onlinesim, request: web.Request) -> _Reply:
    body = await _read_json(request)
    specs, test = decode_add_messages(body, stub.clock())
    for spec in specs:  # atomic: one unlisted number rejects the whole batch (stub choice)
        stub.resolve(spec)
    if test is not None:
        return _test_reply(test, msgspec.json.decode(body)), f"{test}: {len(specs)} valid"
    count = stub.accept_messages(specs, "addMessages")
    return _OK, f"{count} messages"


def _query_echo(request: web.Request) -> dict[str, str]:
    return {key: value for key, value in request.query.items() if key != "apikey"}


async def _take_off_numbers(stub: Onlinesim, request: web.Request) -> _Reply:
    min_sum, test = parse_take_off_query(request.query.items())
    if test is not None:
        return _test_reply(test, _query_echo(request)), f"{test}: sum={min_sum} is valid"
    found = stub.take_off(min_sum)
    return {"response": 1, "list": found}, f"{len(found)} numbers earned >= {min_sum} RUB"


async def _check_number(stub: Onlinesim, request: web.Request) -> _Reply:
    number, test = parse_check_number_query(request.query.items())
    if test is not None:
        return _test_reply(test, _query_echo(request)), f"{test}: {number} is valid"
    info = stub.number_info(number)
    return info, f"{number}: status {info.status}"


async def _save_config(stub: Onlinesim, request: web.Request) -> _Reply:
    body = await _read_json(request)
    services, test = decode_save_config(body)
    if test is not None:
        return _test_reply(test, msgspec.json.decode(body)), f"{test}: {len(services)} valid"
    stub.save_config(services)
    return _OK, f"blacklist: {', '.join(sorted(services)) or '(empty)'}"


_ROUTES: Final[dict[tuple[str, str], tuple[str, _Handler]]] = {
    (hdrs.METH_GET, API_PREFIX): ("checkWork", _check_work),
    (hdrs.METH_POST, f"{API_PREFIX}/sendNumbersOnline"): (
        "sendNumbersOnline",
        _send_numbers_online,
    ),
    (hdrs.METH_POST, f"{API_PREFIX}/addNumber"): ("addNumber", _add_number),
    (hdrs.METH_DELETE, f"{API_PREFIX}/removeNumber"): ("removeNumber", _remove_number),
    (hdrs.METH_POST, f"{API_PREFIX}/addMessage"): ("addMessage", _add_message),
    (hdrs.METH_POST, f"{API_PREFIX}/addMessages"): ("addMessages", _add_messages),
    (hdrs.METH_GET, f"{API_PREFIX}/takeOffNumbers"): ("takeOffNumbers", _take_off_numbers),
    (hdrs.METH_GET, f"{API_PREFIX}/checkNumber"): ("checkNumber", _check_number),
    (hdrs.METH_POST, SAVE_CONFIG_PATH): ("saveConfig", _save_config),
}
assert {name for name, _ in _ROUTES.values()} == ENDPOINTS


# --- dispatch -----------------------------------------------------------------------------


def _check_auth(stub: Onlinesim, request: web.Request) -> None:
    """``Authorization: Bearer <key>`` or ``?apikey=<key>``; every key given must match."""
    supplied: list[str] = []
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Rejected(Code.ERROR_WRONG_KEY, "Authorization is not 'Bearer <key>'", status=401)
        supplied.append(token)
    supplied.extend(request.query.getall("apikey", []))
    if not supplied:
        raise Rejected(Code.ERROR_NO_KEY, "no Authorization header, no apikey", status=401)
    expected = stub.api_key.encode()
    for key in supplied:
        if not hmac.compare_digest(key.encode(), expected):
            raise Rejected(Code.ERROR_WRONG_KEY, "the API key does not match", status=401)


def _text(status: int, text: str, content_type: str = "text/plain") -> web.Response:
    return web.Response(status=status, text=text, content_type=content_type)


def _json(payload: object, status: int = HTTPStatus.OK) -> web.Response:
    return web.Response(
        status=status, body=_ENCODER.encode(payload), content_type="application/json"
    )


def _rejection(exc: Rejected) -> web.Response:
    if exc.status in _JSON_ERROR_STATUSES:
        return _json({"response": exc.code}, exc.status)
    return _text(exc.status, exc.code, "text/html")


def _unavailable() -> web.Response:
    return _text(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")


def _fault_response(fault: Fault) -> web.Response:
    return _text(fault.status, fault.body, fault.content_type)


async def _process(
    stub: Onlinesim, request: web.Request, route: tuple[str, _Handler] | None
) -> tuple[web.Response, str, str]:
    """Steps 4..7 of the module docstring: (response, reason, detail)."""
    path = request.path
    try:
        if route is None:
            if path in (API_PREFIX, SAVE_CONFIG_PATH) or path.startswith(f"{API_PREFIX}/"):
                raise Rejected(
                    Code.REQUEST_NOT_FOUND, f"no endpoint {request.method} {path}", status=405
                )
            return _text(HTTPStatus.NOT_FOUND, "Not Found"), "not found", f"{path} is no API"
        _check_auth(stub, request)
        name, handler = route
        if name == "addMessages" and stub.add_messages_disabled:
            return _text(HTTPStatus.NOT_FOUND, "Not Found"), "disabled", "addMessages disabled"
        if (refused := v2_refusal(stub.dialects, request)) is not None:
            return refused, "dialect", f"refused by the dialect: HTTP {refused.status}"
        payload, summary = await handler(stub, request)
    except Rejected as exc:
        shaped = v2_error(stub.dialects, exc.status, exc.code.value)
        return shaped or _rejection(exc), exc.code.value, exc.detail
    return _json(v2_payload(stub.dialects, payload)), "OK", summary


async def _respond(
    stub: Onlinesim, request: web.Request, route: tuple[str, _Handler] | None
) -> tuple[web.Response, str, str]:
    """Steps 1..7 of the module docstring: (response, reason, detail)."""
    if stub.down:
        return _unavailable(), "down", "set_down(True)"
    if not stub.admit():
        code = Code.TOO_MANY_ATTEMPTS
        return _text(HTTPStatus.TOO_MANY_REQUESTS, code, "text/html"), code.value, "rate_limit"
    fault = stub.take_fault(None if route is None else route[0])
    if fault is None and stub.random_error():
        return _unavailable(), "error_rate", f"random 503 (error_rate {stub.error_rate:g})"
    if fault is not None and not fault.processed:
        return _fault_response(fault), "fault", f"injected {fault.status}"
    response, reason, detail = await _process(stub, request, route)
    if fault is not None:  # processed: the request took effect, its answer is "lost"
        detail = f"injected {fault.status} after {reason}: {detail}"
        response, reason = _fault_response(fault), "fault"
    return response, reason, detail


def _abort(request: web.Request) -> web.Response:
    """Drop the connection without an answer; aiohttp discards the returned response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=HTTPStatus.SERVICE_UNAVAILABLE)


async def _answer(stub: Onlinesim, request: web.Request) -> web.Response:
    if stub.latency:
        await asyncio.sleep(stub.latency)  # the simulated slowness itself
    route = _ROUTES.get(v2_route_key(stub.dialects, request.method, request.path))
    endpoint = None if route is None else route[0]
    reset = stub.take_reset(endpoint)
    if reset is not None and not reset.processed:
        response, reason, detail = None, "reset", "connection aborted"
    else:
        response, reason, detail = await _respond(stub, request, route)
        if reset is not None:  # processed: the request took effect, the connection drops
            response, reason, detail = None, "reset", f"connection aborted after {reason}: {detail}"
    record = RequestRecord(
        method=request.method,
        path=request.path,
        endpoint=endpoint,
        status=0 if response is None else response.status,
        reason=reason,
        detail=detail,
        at=stub.clock(),
    )
    stub.record(record)
    level = logging.INFO if reason in _INFO_REASONS else logging.WARNING
    LOGGER.log(
        level,
        "onlinesim stub: %s %s -> %d %s: %s",
        request.method,
        request.path,
        record.status,
        reason,
        detail,
    )
    return _abort(request) if response is None else response


def make_app(stub: Onlinesim) -> web.Application:
    """An aiohttp application serving ``stub`` at its root."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        return await _answer(stub, request)

    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        # gzip is undone in _read_json so that a corrupt body is a clean 400, not a 500
        handler_args={"auto_decompress": False},
    )
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def serve(stub: Onlinesim, host: str, port: int) -> ServedStub:
    """Start serving ``stub`` on ``host:port`` (0: a free port); returns (runner, bound port)."""
    runner = web.AppRunner(make_app(stub), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return ServedStub(runner, bound)


class _Recorder:
    """Appends every message ``stub`` accepts to a JSON-lines file (see :func:`run_stub`)."""

    def __init__(self, stub: Onlinesim, out: IO[bytes]) -> None:
        self.stub = stub
        self.out = out
        self.written = 0  # how many of stub.messages are in the file

    def pending(self) -> bool:
        return len(self.stub.messages) > self.written

    def flush(self) -> None:
        """Write the messages accepted since the last call, one line each, and flush."""
        messages = self.stub.messages
        if len(messages) <= self.written:
            return
        lines = [
            _ENCODER.encode(
                {"t": m.received_at, "number": m.number, "from": m.from_, "message": m.message}
            )
            for m in messages[self.written :]
        ]
        self.out.write(b"\n".join(lines) + b"\n")
        self.out.flush()
        self.written = len(messages)

    async def run(self) -> None:
        """Write new messages as soon as they are accepted, until cancelled."""
        while True:
            try:
                await self.stub.wait_until(self.pending, timeout=RECORD_WAIT_S)
            except TimeoutError:
                continue
            self.flush()


def _open_record(path: Path) -> IO[bytes]:
    """The record file, for appending (a blocking open, once, before anything listens)."""
    return path.open("ab")


async def run_stub(
    host: str,
    port: int,
    api_key: str,
    *,
    on_ready: Callable[[Onlinesim, int], None] | None = None,
    error_rate: float = 0.0,
    latency: float = 0.0,
    rate_limit: float | None = None,
    seed: int = 0,
    record_path: Path | str | None = None,
    dialects: frozenset[str] = frozenset(),
) -> None:
    """Serve a fresh stand-in until cancelled; every request is logged (accepted ones at INFO).

    ``on_ready(stub, bound_port)`` is called once the socket listens. ``error_rate`` (0..1,
    random 503s from ``seed``), ``latency`` (seconds per answer) and ``rate_limit`` (requests
    per second, else 429) are the fault knobs of :class:`Onlinesim`; a bad value raises
    ValueError before anything listens.

    ``dialects``: names from :data:`muxd_sim.onlinesim_dialects.V2_DIALECTS` (other readings
    of the docs; none: strict).

    ``record_path``: append one JSON line per accepted message (addMessage and addMessages),
    ``{"t": receipt UNIX time, "number": ..., "from": ..., "message": ...}``, flushed as soon as
    the loop is free after each accepting request, and once more on the way out (benchmarks read
    it while the stand-in runs). The file is opened before anything listens.
    """
    stub = Onlinesim(api_key, seed=seed)
    stub.set_dialects(dialects)
    stub.set_error_rate(error_rate)
    stub.set_latency(latency)
    stub.rate_limit(rate_limit)
    out = None if record_path is None else _open_record(Path(record_path))
    try:
        runner, bound = await serve(stub, host, port)
        recorder = None if out is None else _Recorder(stub, out)
        try:
            LOGGER.info(
                "onlinesim stub: Reseller API v2 at http://%s:%d%s", host, bound, API_PREFIX
            )
            if on_ready is not None:
                on_ready(stub, bound)
            if recorder is None:
                await asyncio.Event().wait()  # until cancelled
            else:
                await recorder.run()  # until cancelled
        finally:
            await runner.cleanup()
            if recorder is not None:
                recorder.flush()  # messages accepted while shutting down
    finally:
        if out is not None:
            out.close()
