"""What the v2 stand-in answers in each dialect, on the wire (raw requests, no muxd client)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest

from muxd_sim.onlinesim import Onlinesim, serve

KEY = "standin-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json; charset=utf-8"}
LIST = b'{"numbers": [{"number": "+79001110001", "country_id": 7}]}'
MESSAGE = b'{"date": "1764000000", "number": "+79009999999", "from": "VK", "message": "x"}'


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Onlinesim, str, aiohttp.ClientSession]]:
    stub = Onlinesim(api_key=KEY)
    served = await serve(stub, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            yield stub, f"http://127.0.0.1:{served.port}/api/resellers", http
    finally:
        await served.runner.cleanup()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, str]:
    async with http.request(method, url, data=body, headers=AUTH | headers) as resp:
        return resp.status, await resp.text()


async def test_strict_by_default(wire: tuple[Onlinesim, str, aiohttp.ClientSession]) -> None:
    stub, base, http = wire
    assert await call(http, "POST", f"{base}/sendNumbersOnline", LIST) == (
        200,
        f'{{"response":1,"ids":{{"+79001110001":{stub.ids["+79001110001"]}}}}}',
    )
    assert await call(http, "POST", f"{base}/addMessage", MESSAGE) == (400, "NO_NUMBER")
    assert (await call(http, "GET", base))[0] == 200
    zipped = gzip.compress(LIST)
    gzipped = {"Content-Encoding": "gzip"}
    assert (await call(http, "POST", f"{base}/sendNumbersOnline", zipped, **gzipped))[0] == 200


async def test_each_dialect_on_the_wire(wire: tuple[Onlinesim, str, aiohttp.ClientSession]) -> None:
    stub, base, http = wire
    stub.set_dialects("string-response,string-ids")
    number_id = stub.id_of("+79001110001")
    assert await call(http, "POST", f"{base}/sendNumbersOnline", LIST) == (
        200,
        f'{{"response":"1","ids":{{"+79001110001":"{number_id}"}}}}',
    )
    stub.set_dialects(["json-errors"])
    assert await call(http, "POST", f"{base}/addMessage", MESSAGE) == (
        400,
        '{"response":"NO_NUMBER"}',
    )
    stub.set_dialects(["errors-in-200"])
    assert await call(http, "POST", f"{base}/addMessage", MESSAGE) == (
        200,
        '{"response":"NO_NUMBER"}',
    )
    stub.set_dialects(["post-checkwork"])
    assert await call(http, "GET", base) == (405, '{"response":"REQUEST_NOT_FOUND"}')
    assert await call(http, "POST", f"{base}/checkWork", b"{}") == (200, '{"response":1}')
    stub.set_dialects(["gzip-refused"])
    before = len(stub.numbers)
    stub.numbers.clear()
    zipped = gzip.compress(LIST)
    assert await call(
        http, "POST", f"{base}/sendNumbersOnline", zipped, **{"Content-Encoding": "gzip"}
    ) == (415, "Unsupported Media Type")
    assert (before, len(stub.numbers)) == (1, 0)  # nothing stored
    assert (await call(http, "POST", f"{base}/sendNumbersOnline", LIST))[0] == 200


def test_unknown_dialect_is_refused() -> None:
    stub = Onlinesim(api_key=KEY)
    with pytest.raises(ValueError, match="unknown dialect push-empty"):
        stub.set_dialects("push-empty")  # a v1 receiver's dialect, not the v2 stand-in's
