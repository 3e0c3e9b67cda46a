"""The operator's HTTP endpoint: /metrics, /healthz, /readyz, JSON status API, a status page.

The status page is static: ``/`` serves ``web_static/index.html``, whose script polls the JSON
API and renders it in the browser. No build step and no external assets; the files under
``/static/`` are package data, read once when the app is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from muxd.status import StatusSource, port_status
from muxd.web_guard import Handler, guard

LOGGER = logging.getLogger(__name__)

STATIC_PACKAGE_DIR = "web_static"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page may load only what this endpoint serves itself: no CDN, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# How long an /api/outbox or /api/totals answer is served again: the status page polls both
# every 2 s per open tab; any number of tabs and scripts then cost at most one journal read per
# endpoint this often. Counts shown are at most this old.
STATUS_CACHE_TTL = 1.0


class CachedAnswer:
    """One JSON answer made at most once per ``ttl`` seconds (by ``clock``, monotonic), shared
    by every request: callers arriving while it is being made wait for that one. A failure is
    not kept (the next request tries again); a caller that goes away does not cancel it."""

    def __init__(
        self,
        make: Callable[[], Awaitable[object]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._ttl = ttl
        self._clock = clock
        self._body: bytes | None = None
        self._made_at = 0.0
        self._making: asyncio.Task[bytes] | None = None

    async def body(self) -> bytes:
        if self._body is not None and 0.0 <= self._clock() - self._made_at < self._ttl:
            return self._body
        if self._making is None:
            self._making = asyncio.create_task(self._refresh(), name="status-answer")
            self._making.add_done_callback(_retrieve)
        return await asyncio.shield(self._making)

    async def _refresh(self) -> bytes:
        try:
            started = self._clock()
            body = orjson.dumps(await self._make())
            # Dated from when it was asked for: never older than ``ttl`` when served.
            self._body, self._made_at = body, started
            return body
        finally:
            self._making = None


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a failed answer seen: its waiters got it, or all went away."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """The status page's files by name, from the package data (no subdirectories)."""
    root = importlib.resources.files("muxd") / STATIC_PACKAGE_DIR
    files: dict[str, StaticFile] = {}
    if not root.is_dir():
        return files
    for entry in root.iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
        body = entry.read_bytes()
        files[entry.name] = StaticFile(
            body=body,
            content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
            etag='"' + hashlib.sha256(body).hexdigest()[:16] + '"',
        )
    return files


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def _static_response(request: web.Request, item: StaticFile) -> web.Response:
    headers = {
        "Content-Type": item.content_type,
        "Cache-Control": "no-cache",
        "ETag": item.etag,
        "X-Content-Type-Options": "nosniff",
    }
    if item.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if _etag_matches(request.headers.get("If-None-Match"), item.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=item.body, headers=headers)


def _json(payload: object) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def make_metrics_app(registry: CollectorRegistry, *, hosts: Sequence[str] = ()) -> web.Application:
    """``/metrics`` alone, for its own listener (``http.metrics_listen``): no token, Host check."""
    app = web.Application(middlewares=[guard(token="", hosts=hosts)])
    app.router.add_get("/metrics", _metrics_handler(registry))
    return app


def make_app(
    registry: CollectorRegistry,
    source: StatusSource,
    *,
    token: str = "",
    hosts: Sequence[str] = (),
    upstream: Callable[[], list[dict[str, Any]]] | None = None,
    degraded: Callable[[], str | None] | None = None,
    cache_ttl: float = STATUS_CACHE_TTL,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The operator's app. ``token``/``hosts``: access control (muxd.web_guard); ``upstream``:
    the upstream loops' state for ``/api/upstream``; ``degraded``: a reason ``/healthz`` reports
    (still 200: restarting muxd does not bring Onlinesim back); ``cache_ttl``/``clock``: how
    long /api/outbox and /api/totals answers are reused (0: made for every request)."""
    metrics = _metrics_handler(registry)

    async def healthz(_request: web.Request) -> web.Response:
        reason = source.problem()
        if reason is None and degraded is not None and (why := degraded()) is not None:
            return web.Response(text=f"degraded: {why}\n")
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=reason + "\n")

    async def readyz(_request: web.Request) -> web.Response:
        reason = source.ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=reason + "\n")

    async def api_ports(_request: web.Request) -> web.Response:
        return _json(
            {"ports": [port_status(p, source.health_of(p.number)) for p in source.ports()]}
        )

    async def api_numbers(_request: web.Request) -> web.Response:
        return _json({"numbers": source.numbers()})

    async def totals_now() -> dict[str, Any]:
        return source.totals()

    outbox_answer = CachedAnswer(source.outbox, cache_ttl, clock)
    totals_answer = CachedAnswer(totals_now, cache_ttl, clock)

    async def api_outbox(_request: web.Request) -> web.Response:
        return web.Response(body=await outbox_answer.body(), content_type="application/json")

    async def api_totals(_request: web.Request) -> web.Response:
        return web.Response(body=await totals_answer.body(), content_type="application/json")

    async def api_upstream(_request: web.Request) -> web.Response:
        return _json({"loops": upstream() if upstream is not None else []})

    # A package built without its data must not stop the daemon: only the page is missing.
    static_files = load_static()
    if INDEX not in static_files:
        LOGGER.error(
            "muxd/%s/%s missing from the package: no status page", STATIC_PACKAGE_DIR, INDEX
        )

    async def page(request: web.Request) -> web.Response:
        if INDEX not in static_files:
            return web.Response(
                status=503,
                text=f"status page missing from this muxd package (muxd/{STATIC_PACKAGE_DIR});"
                " the JSON API is at /api/ports, /api/totals, /api/outbox\n",
            )
        return _static_response(request, static_files[INDEX])

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        item = static_files.get(name) if name != INDEX else None  # the page lives at / only
        if item is None:
            raise web.HTTPNotFound()
        return _static_response(request, item)

    app = web.Application(middlewares=[guard(token=token, hosts=hosts)])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/ports", api_ports)
    app.router.add_get("/api/numbers", api_numbers)
    app.router.add_get("/api/outbox", api_outbox)
    app.router.add_get("/api/totals", api_totals)
    app.router.add_get("/api/upstream", api_upstream)
    app.router.add_get("/status", api_ports)  # kept for scripts written against the skeleton
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    return app
