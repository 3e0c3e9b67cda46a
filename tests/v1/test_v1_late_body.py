"""GET_NUMBER's deadline counts from when the request arrived, not from when its body was
read: Onlinesim gives up 10 s after sending, so a body that took most of that leaves no time
to reserve a number it would never hear of."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from muxd.upstream.v1 import server
from muxd.upstream.v1.operations import operation_counts
from muxd.upstream.v1.server import GET_NUMBER_DEADLINE
from muxd.upstream.v1.service import V1Service

from .conftest import KEY, RUSSIA, WAIT, Env, ports_for


async def _post_slowly(
    env: Env, svc: V1Service, body: dict[str, object], delay: float, reading: asyncio.Event
) -> object:
    """POST ``body`` to the v1 server: headers first, the body ``delay`` seconds later (on the
    injected clock), once the handler is waiting for it."""
    data = orjson.dumps(body)
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: muxd\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(data)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(WAIT):  # the handler has started, waiting for the body
            await reading.wait()
        reading.clear()
        await env.clock.advance(delay)
        writer.write(data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return orjson.loads(payload)


async def test_a_get_number_whose_body_came_too_late_reserves_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.ports = ports_for(RUSSIA[:1])
    reading = asyncio.Event()
    original = server.read_body

    async def read_body(request: web.Request) -> dict[str, Any]:
        reading.set()
        return await original(request)

    monkeypatch.setattr(server, "read_body", read_body)
    request = {"action": "GET_NUMBER", "key": KEY, "country": "russia", "service": "vk"}
    async with env.serving() as svc:
        answer = await _post_slowly(env, svc, request, GET_NUMBER_DEADLINE + 1.0, reading)
        assert answer == {"status": "NO_NUMBERS"}
        counts = await operation_counts(env.journal)
        assert counts.get("operations_open", 0) == 0
        assert svc.book.holding == set()
        # In time, the same request gets the number.
        answer = await _post_slowly(env, svc, request, GET_NUMBER_DEADLINE - 1.0, reading)
        assert isinstance(answer, dict)
        assert answer["status"] == "SUCCESS"
