"""The HTTP endpoint over a real socket: every route, the JSON shapes, the status page's files."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

import muxd.web
from muxd.ports import PortInfo, PortStatus
from muxd.status import port_status
from muxd.web import make_app

STATIC = importlib.resources.files("muxd") / "web_static"
NOW = 1_795_000_000.0
HOSTILE = '<img src=x onerror="alert(1)"> & </td>'
COLUMNS = ["port", "state", "signal", "operator", "number", "sms", "last_sms", "error"]


def _ports() -> list[PortInfo]:
    return [
        PortInfo(
            "port000",
            "/dev/ttyUSB0",
            status=PortStatus.READY,
            model="Quectel EC25",
            imei="356092047453300",
            iccid="89701010918667698631",
            number="+79001234567",
            number_source="file",
            operator=25001,
            network="25001",
            country_id=7,
            registered=True,
            signal_dbm=-67,
            sms_received=12,
            last_sms_at=NOW - 5,
            since=NOW - 3600,
        ),
        PortInfo(
            "port001",
            "/dev/ttyUSB1",
            status=PortStatus.BACKOFF,
            at_timeouts=3,
            resyncs=1,
            last_error=HOSTILE,
        ),
        PortInfo("port002", "/dev/ttyUSB2", status=PortStatus.GONE, last_error="device vanished"),
        PortInfo("port010", "/dev/ttyUSB10", status=PortStatus.INITIALIZING, signal_dbm=-101),
    ]


@dataclass
class FakeSource:
    """A StatusSource (muxd.status) with canned answers; problem/ready texts are settable."""

    port_list: list[PortInfo] = field(default_factory=_ports)
    problem_text: str | None = None
    ready_text: str | None = None

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        return None

    def ports(self) -> list[PortInfo]:
        return list(self.port_list)

    def numbers(self) -> list[dict[str, Any]]:
        return [
            {
                "number": "+79001234567",
                "country_id": 7,
                "operator": 25001,
                "date_start": int(NOW - 3600),
                "port_id": "port000",
                "id": 1001,
            }
        ]

    async def outbox(self) -> dict[str, Any]:
        return {
            "messages_delivered": 11,
            "messages_pending": 1,
            "parts_assembled": 12,
            "backlog": 1,
            "last_error": None,
            "auth_failed": False,
        }

    def totals(self) -> dict[str, Any]:
        return {
            "version": "0.1.0",
            "uptime_s": 3600.5,
            "received": 12,
            "forwarded": 11,
            "parked": 0,
            "backlog": 1,
            "last_upstream_ok": NOW - 2,
        }

    def problem(self) -> str | None:
        return self.problem_text

    def ready(self) -> str | None:
        return self.ready_text


@dataclass
class Server:
    url: str
    source: FakeSource
    http: aiohttp.ClientSession

    async def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        async with self.http.get(self.url + path, headers=headers) as resp:
            return resp, await resp.read()


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    """make_app on a real socket (127.0.0.1, a free port) and a real client session."""
    registry = CollectorRegistry()
    Counter("muxd_test_requests", "a metric only this test registers", registry=registry).inc()
    source = FakeSource()
    runner = web.AppRunner(make_app(registry, source), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            yield Server(f"http://127.0.0.1:{port}", source, http)
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving() as running:
        yield running


# -- JSON API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ports", "/status"])
async def test_ports_lists_every_port_with_every_field(server: Server, path: str) -> None:
    resp, _ = await server.get(path)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == ["ports"]
    assert body["ports"] == [port_status(p) for p in server.source.ports()]
    first = body["ports"][0]
    assert list(first) == list(port_status(PortInfo("", "")))
    assert first["state"] == "ready"
    assert first["sellable"] is True
    assert first["signal_dbm"] == -67
    assert "imsi" not in first
    assert body["ports"][1]["last_error"] == HOSTILE  # JSON carries data as is


async def test_numbers(server: Server) -> None:
    resp, _ = await server.get("/api/numbers")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {"numbers": server.source.numbers()}


async def test_outbox(server: Server) -> None:
    resp, _ = await server.get("/api/outbox")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body == await server.source.outbox()
    assert {"backlog", "last_error", "auth_failed"} <= set(body)


async def test_totals(server: Server) -> None:
    resp, _ = await server.get("/api/totals")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body == server.source.totals()
    assert set(body) == {
        "version",
        "uptime_s",
        "received",
        "forwarded",
        "parked",
        "backlog",
        "last_upstream_ok",
    }


async def test_metrics_exposes_the_registry(server: Server) -> None:
    resp, body = await server.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    assert b"muxd_test_requests_total 1.0" in body


# -- probes -------------------------------------------------------------------------------------


async def test_healthz_ok(server: Server) -> None:
    resp, body = await server.get("/healthz")
    assert resp.status == 200
    assert body == b"ok\n"


async def test_healthz_503_names_the_problem(server: Server) -> None:
    server.source.problem_text = "journal failed: disk I/O error"
    resp, body = await server.get("/healthz")
    assert resp.status == 503
    assert body == b"journal failed: disk I/O error\n"


async def test_readyz_ready(server: Server) -> None:
    resp, body = await server.get("/readyz")
    assert resp.status == 200
    assert body == b"ready\n"


async def test_readyz_503_says_why(server: Server) -> None:
    server.source.ready_text = "no port ready"
    resp, body = await server.get("/readyz")
    assert resp.status == 503
    assert body == b"no port ready\n"
    resp, _ = await server.get("/healthz")
    assert resp.status == 200  # not ready is not unhealthy


# -- the status page ----------------------------------------------------------------------------


async def test_page_is_the_table_skeleton_and_the_script(server: Server) -> None:
    resp, raw = await server.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert raw == (STATIC / "index.html").read_bytes()
    page = raw.decode()
    assert re.search(r'<table id="ports">\s*<thead>', page)
    assert '<tbody id="port-rows">' in page
    assert re.findall(r'<th data-key="(\w+)"', page) == COLUMNS
    assert '<script src="static/app.js" defer></script>' in page
    assert '<link rel="stylesheet" href="static/style.css">' in page
    # Rendered in the browser from the API, not on the server.
    assert "port000" not in page


async def test_page_loads_nothing_from_elsewhere(server: Server) -> None:
    _, raw = await server.get("/")
    refs = re.findall(r'(?:src|href)="([^"]*)"', raw.decode())
    assert refs
    for ref in refs:
        assert not re.match(r"(?i)^([a-z][a-z0-9+.-]*:)?//", ref), ref
        if ref.startswith("static/"):
            resp, _ = await server.get("/" + ref)
            assert resp.status == 200, ref


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ],
)
async def test_static_files(server: Server, name: str, content_type: str) -> None:
    resp, body = await server.get(f"/static/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert body == (STATIC / name).read_bytes()

    etag = resp.headers["ETag"]
    again, body = await server.get(f"/static/{name}", headers={"If-None-Match": etag})
    assert again.status == 304
    assert body == b""
    assert again.headers["Cache-Control"] == "no-cache"


async def test_head_of_the_page(server: Server) -> None:
    async with server.http.head(server.url + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/index.html",  # the page lives at / only
        "/static/..%2Fweb.py",
        "/static/../web.py",
        "/static/",
    ],
)
async def test_static_serves_only_its_files(server: Server, path: str) -> None:
    resp, _ = await server.get(path)
    assert resp.status == 404


def test_script_never_writes_html() -> None:
    """Data reaches the page through textContent and attributes only."""
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script


async def test_missing_page_files_leave_the_api_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A package built without its data still runs the daemon; only the page is missing."""
    monkeypatch.setattr(muxd.web, "STATIC_PACKAGE_DIR", "no_such_dir")
    with caplog.at_level(logging.ERROR, logger="muxd.web"):
        async with serving() as server:
            resp, body = await server.get("/")
            assert resp.status == 503
            assert b"/api/ports" in body
            resp, _ = await server.get("/static/app.js")
            assert resp.status == 404
            resp, _ = await server.get("/api/ports")
            assert resp.status == 200
    assert "missing from the package" in caplog.text
