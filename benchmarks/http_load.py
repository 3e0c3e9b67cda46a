"""A lean HTTP/1.1 load client for benchmarks: keep-alive connections opened before the
measurement, a request written in one ``transport.write``, the answer read by Content-Length.

What a burst measures is the server; a load generator sharing its cores should cost as little
as it can (an aiohttp client spends about 0.3 ms of CPU per request here, on the cores the
boxes and PostgreSQL use). This one does not follow redirects, does not speak TLS and reads
only answers that carry a Content-Length (aiohttp's ``web.Response`` always does); anything
else fails the request loudly.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import cast
from urllib.parse import urlsplit

import orjson

HEAD_END = b"\r\n\r\n"
CONNECT_TIMEOUT = 10.0


class Answer:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> dict[str, object]:
        value = orjson.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object: {self.body[:80]!r}")
        return value


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length: int | None = None
        gzipped = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "content-encoding" and value.strip().lower() == "gzip":
                gzipped = True
        if length is None:
            self.waiter.set_exception(ValueError(f"no Content-Length: {head[0]}"))
            return
        start = end + len(HEAD_END)
        if len(self.buffer) < start + length:
            return
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        if gzipped:
            body = zlib.decompress(body, 31)
        self.waiter.set_result(Answer(int(head[0].split(" ", 2)[1]), body))


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"{url}: only http://host:port/path is spoken here")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self._proto = _Protocol()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await loop.create_connection(lambda: self._proto, self.host, self.port)

    def request_bytes(self, body: bytes) -> bytes:
        """A POST of a JSON ``body``, encoded once (a burst writes it as is)."""
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: muxd-bench\r\nContent-Type: application/json\r\n"
            f"Accept-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def send(self, request: bytes) -> Answer:
        proto = self._proto
        if proto.closed or proto.transport is None:
            raise ConnectionError("connection closed")
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.write(request)
        return await proto.waiter

    async def post_json(self, body: dict[str, object]) -> Answer:
        return await self.send(self.request_bytes(orjson.dumps(body)))

    def close(self) -> None:
        if self._proto.transport is not None:
            self._proto.transport.close()
