"""The operator's HTTP endpoint: /metrics, /healthz, /readyz, JSON status API, a status page."""

from __future__ import annotations

import html

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from muxd.modem.state import PortInfo
from muxd.status import StatusSource, port_status


def _json(payload: object) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def make_app(registry: CollectorRegistry, source: StatusSource) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        reason = source.problem()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=reason + "\n")

    async def readyz(_request: web.Request) -> web.Response:
        reason = source.ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=reason + "\n")

    async def api_ports(_request: web.Request) -> web.Response:
        return _json({"ports": [port_status(p) for p in source.ports()]})

    async def api_numbers(_request: web.Request) -> web.Response:
        return _json({"numbers": source.numbers()})

    async def api_outbox(_request: web.Request) -> web.Response:
        return _json(await source.outbox())

    async def api_totals(_request: web.Request) -> web.Response:
        return _json(source.totals())

    async def page(_request: web.Request) -> web.Response:
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(v))}</td>" for v in port_status(p).values())
            + "</tr>"
            for p in sorted(source.ports(), key=lambda p: p.name)
        )
        heads = "".join(f"<th>{h}</th>" for h in port_status(PortInfo("", "")))
        body = (
            "<!doctype html><meta charset=utf-8><title>muxd</title>"
            "<h1>muxd</h1><p><a href=/metrics>/metrics</a> · <a href=/api/ports>/api/ports</a>"
            f"</p><table><tr>{heads}</tr>{rows}</table>"
        )
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/ports", api_ports)
    app.router.add_get("/api/numbers", api_numbers)
    app.router.add_get("/api/outbox", api_outbox)
    app.router.add_get("/api/totals", api_totals)
    app.router.add_get("/status", api_ports)  # kept for scripts written against the skeleton
    app.router.add_get("/", page)
    return app
