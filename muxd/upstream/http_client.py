"""The v2 upstream's HTTP/1.1 client: a pool of keep-alive connections per origin, one request
on a connection at a time, the answer read by :class:`muxd.upstream.http1.ResponseParser`.

Why not aiohttp here: at low load every SMS is one ``addMessages`` request, and V2Client's
request over aiohttp costs about 2.5 times its CPU over this client (``python -m
benchmarks.v2_request_cost``). This client writes a request in one ``transport.write`` from a
head built once, and reads the answer with a parser that knows only what the upstream may send.

What it guarantees to :class:`muxd.upstream.v2.V2Client`:

- **A late answer is never read as another request's.** A request that times out or is
  cancelled aborts its connection; so does an answer the parser refuses, bytes on an idle
  connection, or an answer that says ``Connection: close``. Only a connection whose answer was
  whole and reusable goes back to the pool.
- **One deadline** per request (``timeout``, on the loop's monotonic clock) covers the name
  lookup, connect, TLS handshake, the write and the whole answer, as aiohttp's ``total`` did.
  An answer already in the socket when the deadline fires (a busy loop sees both in one pass)
  is still read: an acknowledgement thrown away would send the SMS again.
- **Every failure is** :class:`HttpError` (refused, reset, name lookup, TLS, a malformed
  answer) **or** ``TimeoutError``. Only an idempotent request (:data:`IDEMPOTENT`, never a
  POST) is sent a second time, once, when its connection fails; the caller's loop decides
  the rest, as with aiohttp.
- A connection idle longer than :data:`KEEPALIVE_IDLE` is closed, not reused (servers close
  theirs after a while, and a request written into a closing connection fails).
- TLS by the system's trust store (``ssl.create_default_context()``), the server's name checked.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlencode, urlsplit

import aiohappyeyeballs

from muxd.upstream.http1 import Answer, HttpProtocolError, ResponseParser

# A connection idle this long is closed rather than reused (below common server keep-alive
# timeouts: nginx 75 s, aiohttp 75 s, Apache 5 s is the exception and fails one request).
KEEPALIVE_IDLE = 15.0
# Methods sent again once, at once, when the connection fails before a whole answer (RFC 9110
# 9.2.2; a keep-alive connection the server closed as the request went out): never a POST,
# which may have been acted on.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Seconds before the next address is tried while a connect hangs (RFC 8305's 250 ms).
HAPPY_EYEBALLS_DELAY = 0.25
# Idle connections kept for reuse per origin; more in flight at once are opened and closed
# after. As many as the publisher sends at once (a list in parts), so none is reopened.
MAX_IDLE = 8


class HttpError(Exception):
    """The request got no answer: connection refused or reset, name lookup, TLS, or an answer
    that is not HTTP."""


class _Connection(asyncio.Protocol):
    """One connection; at most one request on it at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    # -- protocol callbacks (never raise) ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self._fail(HttpError("bytes on an idle connection"))  # never reused
            return
        try:
            answer = parser.feed(data)
        except HttpProtocolError as exc:
            self._fail(HttpError(f"bad answer: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - a parser bug: never out of a protocol callback
            self._fail(HttpError(f"bad answer: {type(exc).__name__}: {exc}"))
            return
        if answer is not None:
            self._parser = None
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        parser, waiter = self._parser, self._waiter
        self.closed = True
        if parser is not None and waiter is not None and not waiter.done():
            self._parser = None
            self._finish_at_eof(parser, waiter)
        return False  # close the transport

    def _finish_at_eof(self, parser: ResponseParser, waiter: asyncio.Future[Answer]) -> None:
        try:
            waiter.set_result(parser.feed_eof())
        except HttpProtocolError as exc:
            waiter.set_exception(HttpError(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a parser bug: never out of a protocol callback
            waiter.set_exception(HttpError(f"{type(exc).__name__}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser, waiter = self._parser, self._waiter
        if exc is None and parser is not None and waiter is not None and not waiter.done():
            # An orderly end without eof_received: uvloop's TLS transport when the server
            # sends no close_notify. An answer that runs to the end of the connection is whole.
            self._parser = None
            self._finish_at_eof(parser, waiter)
            return
        if waiter is not None and not waiter.done():
            why = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
            waiter.set_exception(HttpError(f"connection lost: {why}"))

    # -- use -----------------------------------------------------------------------------

    def _fail(self, exc: HttpError) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def exchange(self, method: str, request: bytes, deadline: float) -> Answer:
        assert self.transport is not None
        self._parser = ResponseParser(method)
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        self._waiter = waiter
        self.transport.write(request)
        # Woken by the answer or by the deadline, whichever comes first: a timer rather than
        # asyncio.timeout around a shield (this is one request per SMS at low load).
        gate: asyncio.Future[None] = self._loop.create_future()
        waiter.add_done_callback(lambda _w: _open(gate))
        expiry = self._loop.call_at(deadline, _open, gate)
        try:
            await gate
            if not waiter.done():
                # The deadline and the whole answer may be seen in the same pass of the loop
                # (it was busy; uvloop runs timers before reading): let it read what is already
                # in the socket before the answer, an acknowledgement perhaps, is thrown away.
                for _ in range(2):
                    await asyncio.sleep(0)
                if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
                    raise TimeoutError
            return waiter.result()
        finally:
            expiry.cancel()
            self._waiter = None
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                # Failed as this request was cancelled (the close, a reset read in the same
                # pass): nobody reads it now, so it is not logged as never retrieved.
                waiter.exception()

    def abort(self) -> None:
        """Close from our side: a request still waiting fails saying so (never with a body cut
        short by the close read as whole)."""
        self.closed = True
        self._parser = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpError("connection closed by muxd (client closed)"))
        if self.transport is not None:
            self.transport.abort()


def _open(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_result(None)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, and the base URL's path they go under."""

    host: str
    port: int
    tls: bool
    prefix: str  # the base URL's path, without its trailing "/"
    host_header: str

    @classmethod
    def from_url(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        tls = parts.scheme == "https"
        host = parts.hostname
        if not host.isascii():  # an IDN: its ASCII form on the wire, as yarl sends it
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"bad host name in {base_url!r}: {exc}") from None
        header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            header = f"{header}:{parts.port}"
        port = parts.port or (443 if tls else 80)
        return cls(host, port, tls, parts.path.rstrip("/"), header)


class HttpClient:
    """Requests to any :class:`Origin`, with a pool of idle keep-alive connections to each;
    like a session, one per process, closed at the end."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def request(
        self,
        origin: Origin,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: bytes = b"",
        body: bytes | None = None,
        timeout: float,
    ) -> Answer:
        """``method`` ``path`` (under the origin's prefix) with ``query``, ``headers`` (lines
        ``Name: value\r\n``, encoded) and ``body``; the answer, whatever its status.
        :class:`HttpError` or ``TimeoutError`` otherwise."""
        if self._closed:
            raise HttpError("client closed")
        target = origin.prefix + path
        if query:
            target = f"{target}?{urlencode(query)}"
        head = f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
        if body is not None or method not in ("GET", "HEAD"):
            head = f"{head}Content-Length: {len(body or b'')}\r\n"
        request = b"".join((head.encode("latin-1"), headers, b"\r\n", body or b""))
        # One deadline for the lookup, the connect, the handshake and the answer.
        deadline = asyncio.get_running_loop().time() + timeout
        retries = 1 if method in IDEMPOTENT else 0
        while True:
            conn = self._reuse(origin)
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(origin)
            try:
                answer = await conn.exchange(method, request, deadline)
                break
            except HttpError:
                self._drop(conn)
                if not retries:
                    raise
                retries -= 1  # once, at once, and only what may be repeated
            except BaseException:
                # Timed out or cancelled: whatever comes later on this connection
                # belongs to no request.
                self._drop(conn)
                raise
        if answer.keep_alive and not conn.closed and not self._closed:
            self._release(origin, conn)
        else:
            self._drop(conn)
        return answer

    def _reuse(self, origin: Origin) -> _Connection | None:
        """An idle connection to ``origin`` fresh enough to be used again, if any."""
        if self._closed:  # closed while a request waited to be sent again
            raise HttpError("client closed")
        idle = self._idle.get((origin.host, origin.port, origin.tls))
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_IDLE:
                return conn
            self._drop(conn)
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._ssl() if origin.tls else None
        try:
            infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
            # Every address the name has, IPv6 and IPv4 interleaved, a new attempt every
            # HAPPY_EYEBALLS_DELAY while earlier ones hang (a host whose IPv6 route is a black
            # hole still answers over IPv4), as aiohttp does.
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
            )
            try:
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    sock=sock,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
            except BaseException:  # a failed TLS handshake, a deadline: the socket is ours
                sock.close()
                raise
        # refused, unreachable, name lookup (gaierror), TLS (SSLError); RuntimeError: uvloop's
        # sock_connect (aiohappyeyeballs#93); ValueError: no address, a name IDNA refuses.
        except (OSError, RuntimeError, ValueError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        self._open.add(conn)
        return conn

    def idle(self, origin: Origin) -> int:
        """Connections to ``origin`` open and waiting for a request."""
        idle = self._idle.get((origin.host, origin.port, origin.tls), [])
        return sum(1 for conn in idle if not conn.closed)

    def _release(self, origin: Origin, conn: _Connection) -> None:
        conn.idle_since = asyncio.get_running_loop().time()
        idle = self._idle.setdefault((origin.host, origin.port, origin.tls), [])
        idle.append(conn)
        while len(idle) > MAX_IDLE:
            self._drop(idle.pop(0))

    def _drop(self, conn: _Connection) -> None:
        conn.abort()
        self._open.discard(conn)

    async def close(self) -> None:
        """Close every connection; later requests fail."""
        self._closed = True
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
