"""The operator's HTTP endpoint: /metrics, /healthz, /readyz, /status (JSON) and a status page."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from muxd.modem.state import PortInfo, PortStatus


def port_status(info: PortInfo) -> dict[str, Any]:
    return {
        "port": info.name,
        "path": info.path,
        "state": info.status.value,
        "imei": info.imei,
        "iccid": info.iccid,
        "number": info.number,
        "operator": info.operator,
        "country_id": info.country_id,
        "registered": info.registered,
        "signal_dbm": info.signal_dbm,
        "sellable": info.sellable,
        "sms_received": info.sms_received,
        "last_sms_at": info.last_sms_at,
        "last_error": info.last_error,
    }


def make_app(
    registry: CollectorRegistry,
    ports: Callable[[], Iterable[PortInfo]],
    *,
    healthy: Callable[[], str | None],
) -> web.Application:
    """``healthy()`` returns None when the daemon is healthy, else the reason it is not."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        reason = healthy()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=reason + "\n")

    async def readyz(_request: web.Request) -> web.Response:
        ready = sum(1 for p in ports() if p.status is PortStatus.READY)
        if healthy() is None and ready:
            return web.Response(text=f"ready: {ready} ports\n")
        return web.Response(status=503, text=f"not ready: {ready} ports\n")

    async def status(_request: web.Request) -> web.Response:
        body = orjson.dumps({"ports": [port_status(p) for p in ports()]})
        return web.Response(body=body, content_type="application/json")

    async def page(_request: web.Request) -> web.Response:
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(v))}</td>" for v in port_status(p).values())
            + "</tr>"
            for p in sorted(ports(), key=lambda p: p.name)
        )
        heads = "".join(f"<th>{h}</th>" for h in port_status(PortInfo("", "")))
        body = (
            "<!doctype html><meta charset=utf-8><title>muxd</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
            "</style><h1>muxd</h1><p><a href=/metrics>/metrics</a> · <a href=/status>/status</a>"
            f"</p><table><tr>{heads}</tr>{rows}</table>"
        )
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/", page)
    return app
