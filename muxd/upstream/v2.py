"""Onlinesim Reseller API v2 client (muxd calls Onlinesim). Field names and types follow
reseller-api.md §7 exactly: ``number`` with ``+``, ``country_id`` integer, ``operator`` integer
MCC+MNC, ``date_start`` integer UNIX seconds, ``date`` a string of UNIX seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from muxd.errors import UpstreamError

LOGGER = logging.getLogger(__name__)

# Onlinesim publishes no timeout for partner calls; 30 s bounds a hung connection while leaving
# room for a slow answer to a large sendNumbersOnline list.
REQUEST_TIMEOUT = 30.0


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


class _Reply(msgspec.Struct):
    response: int | str
    ids: dict[str, int | None] | None = None


_ENCODER = msgspec.json.Encoder()
_REPLY = msgspec.json.Decoder(_Reply)

# observer(endpoint, result, seconds): result is "ok", an HTTP status, or "error".
Observer = Callable[[str, str, float], None]


class V2Client:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        *,
        test: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json; charset=utf-8",
        }
        self._test = test
        self._observer = observer

    async def _call(
        self, method: str, endpoint: str, body: dict[str, Any] | None = None, **params: str
    ) -> _Reply:
        if body is not None and self._test is not None:
            body["test"] = self._test
        if body is None and self._test is not None:
            params["test"] = self._test
        url = f"{self._base}/api/resellers{'/' + endpoint if endpoint else ''}"
        data = _ENCODER.encode(body) if body is not None else None
        started = time.perf_counter()
        result = "error"
        try:
            async with self._http.request(
                method,
                url,
                data=data,
                headers=self._headers,
                params=params or None,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as resp:
                text = await resp.text()
                result = str(resp.status)
                if resp.status != 200:
                    raise UpstreamError(endpoint or "checkWork", resp.status, text)
                try:
                    reply = _REPLY.decode(text)
                except msgspec.DecodeError as exc:
                    raise UpstreamError(endpoint, resp.status, f"bad reply: {text}") from exc
                if reply.response != 1:
                    result = "refused"
                    raise UpstreamError(endpoint, resp.status, str(reply.response))
                result = "ok"
                return reply
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(endpoint, 0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            if self._observer is not None:
                self._observer(endpoint or "checkWork", result, time.perf_counter() - started)

    async def send_numbers_online(self, numbers: list[NumberEntry]) -> dict[str, int | None]:
        body = {"numbers": [msgspec.to_builtins(n) for n in numbers]}
        reply = await self._call("POST", "sendNumbersOnline", body)
        return reply.ids or {}

    async def check_work(self) -> None:
        await self._call("GET", "")

    async def add_number(self, entry: NumberEntry) -> dict[str, int | None]:
        body = msgspec.to_builtins(entry)
        body["rent"] = entry.rent  # required by addNumber even when 0
        reply = await self._call("POST", "addNumber", body)
        return reply.ids or {}

    async def remove_number(self, number: str) -> None:
        await self._call("DELETE", "removeNumber", number=number)

    async def add_messages(self, items: list[MessageItem]) -> None:
        await self._call("POST", "addMessages", {"messages": msgspec.to_builtins(items)})

    async def add_message(self, item: MessageItem) -> None:
        await self._call("POST", "addMessage", msgspec.to_builtins(item))
