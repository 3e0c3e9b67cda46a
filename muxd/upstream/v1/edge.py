"""The HTTP edge of muxd's v1 partner server: what every request meets before an action runs.

- **Admission**: at most :data:`MAX_CONCURRENT_REQUESTS` requests in the handlers at once; one
  more is answered 503 with ``Retry-After`` before any of its body is read (nothing queues).
- **Body**: received within :data:`BODY_TIMEOUT` (else 408), at most :data:`MAX_BODY_BYTES`
  (else 413, refused on its Content-Length before any of it is read, or once that much was
  read, or once gunzipping passes it); ``Content-Encoding: gzip`` or a body starting with the
  gzip magic is gunzipped; it must be a JSON object in UTF-8 (else 400).
- **Answers**: JSON in UTF-8, gzip when the request accepts it; errors are a short
  ``{"status": "ERROR", "error": ...}`` that never repeats a hostile body.
- **TLS**: :func:`tls_context` loads a PEM certificate and its key for the listener.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from aiohttp import hdrs, web

LOGGER = logging.getLogger(__name__)

# A v1 body is a few hundred bytes; a long exceptionPhoneSet stays far below this.
MAX_BODY_BYTES: Final = 64 * 1024
# Requests served at once: Onlinesim sends a few at a time, each answered in milliseconds;
# beyond this they are answered 503 with Retry-After at once (never queued), so a flood or
# slow senders cost bounded memory and the journal never sees a backlog it can't answer in
# time.
MAX_CONCURRENT_REQUESTS: Final = 256
# Retry-After (seconds) of that 503.
BUSY_RETRY_AFTER: Final = 1
# A body not received within this many seconds is answered 408: a slow sender holds one of
# the MAX_CONCURRENT_REQUESTS places this long at most (Onlinesim's whole request must be
# answered within 10 s anyway).
BODY_TIMEOUT: Final = 10.0
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
GZIP_MAGIC: Final = b"\x1f\x8b"
# A gzip body this small is inflated in one call (a streaming decompressor costs more to set
# up than the body to inflate); DEFLATE expands at most ~1032:1, so that is at most ~1 MB for
# a moment, measured against MAX_BODY_BYTES right after.
SMALL_GZIP: Final = 1000
# Answers are small: the fastest level compresses them almost as well as the best.
GZIP_LEVEL: Final = 1
# An answer up to this size (GET_NUMBER's, FINISH_ACTIVATION's, every error) is compressed with
# a window as large as itself and zlib's smallest hash table: as few bytes out, without
# setting up (and clearing) the default window and tables, which costs ten times as much as
# compressing them.
SMALL_ANSWER: Final = 512
SMALL_GZIP_WBITS: Final = 16 + 9  # gzip wrapper, 512-byte window
SMALL_GZIP_MEMLEVEL: Final = 1

# How much of a hostile value an error answer or a log line repeats.
ECHO: Final = 40

_ENCODER = msgspec.json.Encoder()


class Fail(Exception):
    """An answer other than success: HTTP status, JSON payload, metrics result."""

    def __init__(self, status: int, payload: dict[str, Any], result: str) -> None:
        super().__init__(payload.get("error", payload.get("status")))
        self.status = status
        self.payload = payload
        self.result = result


def _error(status: int, error: str, result: str) -> Fail:
    return Fail(status, {"status": "ERROR", "error": error}, result)


def _echo(value: object) -> str:
    """``repr(value)``, cut short: error answers and logs never repeat a hostile body."""
    text = repr(value)
    return text if len(text) <= ECHO else text[: ECHO - 3] + "..."


def _gunzip(data: bytes) -> bytes:
    if len(data) <= SMALL_GZIP:
        try:
            plain = zlib.decompress(data, GZIP_WBITS)
        except zlib.error as exc:
            raise _error(400, f"body is not valid gzip: {exc}", "bad_request") from exc
        if len(plain) > MAX_BODY_BYTES:
            raise _error(413, "body too large", "bad_request")
        return plain
    decompressor = zlib.decompressobj(GZIP_WBITS)
    try:
        plain = decompressor.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise _error(400, f"body is not valid gzip: {exc}", "bad_request") from exc
    if len(plain) > MAX_BODY_BYTES:
        raise _error(413, "body too large", "bad_request")
    if not decompressor.eof:
        raise _error(400, "gzip body is truncated", "bad_request")
    return plain


async def read_body(request: web.Request) -> dict[str, Any]:
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise _error(400, f"unsupported Content-Encoding {_echo(encoding)}", "bad_request")
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _error(413, "body too large", "bad_request")  # before reading any of it
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            data = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _error(413, "body too large", "bad_request") from exc
    except TimeoutError as exc:
        raise _error(408, "body not received in time", "bad_request") from exc
    if encoding != "identity" or data.startswith(GZIP_MAGIC):
        data = _gunzip(data)
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise _error(400, f"body is not JSON: {exc}", "bad_request") from exc
    except UnicodeDecodeError as exc:
        raise _error(400, "body is not UTF-8", "bad_request") from exc
    except RecursionError as exc:
        raise _error(400, "body is nested too deeply", "bad_request") from exc
    if not isinstance(body, dict):
        raise _error(400, "body is not a JSON object", "bad_request")
    return body


def _gzip(data: bytes) -> bytes:
    if len(data) > SMALL_ANSWER:
        return zlib.compress(data, GZIP_LEVEL, GZIP_WBITS)
    small = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, SMALL_GZIP_WBITS, SMALL_GZIP_MEMLEVEL)
    return small.compress(data) + small.flush()


def json_response(request: web.Request, payload: dict[str, Any], status: int) -> web.Response:
    data = _ENCODER.encode(payload)
    headers = {hdrs.CONTENT_TYPE: "application/json; charset=utf-8"}
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower():
        # One-shot: a fraction of the cost of aiohttp's streaming compressor for a body of
        # a few hundred bytes.
        data = _gzip(data)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
    return web.Response(body=data, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own 404 and 405 as the same JSON error the handlers answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_response(request, {"status": "ERROR", "error": exc.reason}, exc.status)
        if hdrs.ALLOW in exc.headers:
            response.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
        return response


class Admission:
    """At most ``limit`` requests in the handlers at once; one more is answered 503 with
    Retry-After before any of its body is read. Logs when refusing starts and how many were
    refused once it ends (state changes, not one line per request)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0  # since refusing started

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.in_flight >= self.limit:
            if not self.refused:
                LOGGER.warning(
                    "v1: %d requests in progress; refusing more with 503 until one ends",
                    self.in_flight,
                )
            self.refused += 1
            response = json_response(request, {"status": "ERROR", "error": "busy"}, 503)
            response.headers[hdrs.RETRY_AFTER] = str(BUSY_RETRY_AFTER)
            response.force_close()  # its body is not wanted on this connection
            return response
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            if self.refused and self.in_flight < self.limit:
                LOGGER.warning("v1: served again; %d requests were refused with 503", self.refused)
                self.refused = 0


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate (chain) and its private key; ValueError
    naming the config key (``v1.tls_cert`` or ``v1.tls_key``) and the reason. An encrypted
    key is refused rather than prompted for (a daemon has nobody to ask)."""
    for name, path in (("v1.tls_cert", cert), ("v1.tls_key", key)):
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {path}: {exc.strerror or exc}") from exc
    try:  # the certificates alone, in a throwaway context, to tell whose fault it is
        ssl.create_default_context().load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        raise ValueError(f"v1.tls_cert: no PEM certificate in {cert}: {exc}") from exc
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise ValueError(
            f"v1.tls_key: {key} is not an unencrypted PEM private key of v1.tls_cert: {exc}"
        ) from exc
    return context


def _no_password() -> str:
    return ""  # an encrypted key then fails to load instead of prompting on the terminal
