"""V2Client reads an answer compressed against its wishes: it asks for identity, but a proxy in
front of Onlinesim may gzip every answer anyway. An acknowledgement it cannot read would make
the shipper send the same SMS again and again."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from muxd.upstream.v2 import MessageItem, V2Client

KEY = "k" * 32


class Compressing:
    """A real HTTP server that gzips every answer, whatever the request accepts."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.accepted.append(request.headers.get("Accept-Encoding"))
        body = gzip.compress(orjson.dumps({"response": 1}))
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )


@pytest.fixture
async def compressing() -> AsyncIterator[tuple[Compressing, str]]:
    server = Compressing()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_gzipped_acknowledgement_is_read(compressing: tuple[Compressing, str]) -> None:
    server, url = compressing
    item = MessageItem(date="1795608000", number="+79001234567", sender="Bank", message="code")
    async with aiohttp.ClientSession() as http:
        client = V2Client(http, url, KEY)
        await client.add_messages([item])
        await client.add_message(item)
        await client.check_work()
    assert server.requests == 3
    assert server.accepted == ["identity"] * 3
