"""How :class:`muxd.upstream.v2.V2Client`'s requests travel: one interface, two carriers.

- :class:`LeanTransport`, over :class:`muxd.upstream.http_client.HttpClient`: what the daemon
  uses (an SMS at low load is one request; this one costs less than half of aiohttp's CPU).
- :class:`AiohttpTransport`, over an ``aiohttp.ClientSession``: the one-off commands
  (``muxd upstream ...``, preflight), and tests that fault the session's name resolution.

Both send the same header lines, follow no redirect, and give the answer whole, its body
decoded from gzip or deflate; both fail with :class:`HttpError` or ``TimeoutError`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from muxd.upstream.http1 import SINGLETONS, Answer
from muxd.upstream.http_client import HttpClient, HttpError, Origin


class Transport(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Answer:
        """``path`` under the base URL; the answer whatever its status."""
        ...


class LeanTransport:
    def __init__(self, http: HttpClient, base_url: str, headers: Mapping[str, str]) -> None:
        self._http = http
        self._origin = Origin.from_url(base_url)
        # Encoded once: every request reuses the bytes.
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Answer:
        return await self._http.request(
            self._origin, method, path, query=query, headers=self._headers, body=body,
            timeout=timeout,
        )  # fmt: skip


class AiohttpTransport:
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, headers: Mapping[str, str]
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers: CIMultiDict[str] = CIMultiDict(headers)
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Answer:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(f"{self._base}{path}")
        limit = self._timeouts.get(timeout)
        if limit is None:
            limit = self._timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=self._headers,
                params=dict(query) if query else None,
                timeout=limit,
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                headers: dict[str, str] = {}
                for name, value in resp.headers.items():
                    key = name.lower()
                    if key not in headers:
                        headers[key] = value
                    elif key not in SINGLETONS:  # Retry-After, Location: the first, as before
                        headers[key] = f"{headers[key]}, {value}"
                return Answer(resp.status, resp.reason or "", headers, data, True)
        except aiohttp.ClientError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc


def transport_for(
    http: aiohttp.ClientSession | HttpClient, base_url: str, headers: Mapping[str, str]
) -> Transport:
    if isinstance(http, HttpClient):
        return LeanTransport(http, base_url, headers)
    return AiohttpTransport(http, base_url, headers)
