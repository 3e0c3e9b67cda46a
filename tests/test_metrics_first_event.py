"""Counters exist at 0 from the start, so the first event is an increase Prometheus can see.

A series born at its first event starts at 1, and ``increase()``/``rate()`` never count that first
event: one parked PDU would not fire the alert on parked PDUs. Scraped over a real socket twice,
around each first event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from muxd.metrics import Metrics
from muxd.upstream.v1.metrics import MetricsV1Observer
from muxd.web import make_metrics_app


@contextlib.asynccontextmanager
async def scraping(metrics: Metrics) -> AsyncIterator[aiohttp.ClientSession]:
    runner = web.AppRunner(make_metrics_app(metrics.registry), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        await runner.cleanup()


async def scrape(
    http: aiohttp.ClientSession,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with http.get("/metrics") as resp:
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_v2_counters_start_at_zero_and_count_the_first_event() -> None:
    metrics = Metrics()
    metrics.start_at_zero("v2")
    async with scraping(metrics) as http:
        before = await scrape(http)
        metrics.count_part("parked")
        metrics.observe_upstream("addMessages", "503", 0.01)
        metrics.observe_upstream("addMessages", "error", 0.01)  # a reset: no status
        after = await scrape(http)
    parked = ("muxd_sms_parts_total", {"result": "parked"})
    assert value(before, parked[0], **parked[1]) == 0.0
    assert value(after, parked[0], **parked[1]) == 1.0
    for result in ("http_5xx", "network"):
        labels = {"endpoint": "addMessages", "result": result}
        assert value(before, "muxd_upstream_requests_total", **labels) == 0.0
        assert value(after, "muxd_upstream_requests_total", **labels) == 1.0
    # Raw status codes never become label values.
    assert not [
        k for k in after if k[0] == "muxd_upstream_requests_total" and ("result", "503") in k[1]
    ]


async def test_v1_counters_start_at_zero_and_stay_bounded() -> None:
    metrics = Metrics()
    metrics.start_at_zero("v1")
    observer = MetricsV1Observer(metrics)
    async with scraping(metrics) as http:
        before = await scrape(http)
        observer.push("ignored")
        observer.push("some_new_code_from_upstream")
        observer.request("GET_NUMBER", "no_numbers", 0.002)
        after = await scrape(http)
    assert value(before, "muxd_v1_pushes_total", result="ignored") == 0.0
    assert value(after, "muxd_v1_pushes_total", result="ignored") == 1.0
    assert value(after, "muxd_v1_pushes_total", result="other") == 1.0
    labels = {"action": "GET_NUMBER", "result": "no_numbers"}
    assert value(before, "muxd_v1_requests_total", **labels) == 0.0
    assert value(after, "muxd_v1_requests_total", **labels) == 1.0


async def test_process_metrics_and_no_created_series() -> None:
    metrics = Metrics()
    metrics.start_at_zero("v2")
    async with scraping(metrics) as http:
        samples = await scrape(http)
    names = {name for name, _ in samples}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    } <= names
    assert not [n for n in names if n.endswith("_created")]
