"""An upstream loop's state, as the operator sees it: /metrics, /api/upstream, /healthz."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd.daemon_status import LOOP_DEGRADED_AFTER
from muxd.metrics import UpstreamLoopCollector
from muxd.upstream.backoff import Policy, RetryLoop
from muxd.web import make_app
from muxd_sim.clock import FakeClock
from tests.test_web import FakeSource


async def test_failing_loop_is_on_metrics_api_and_healthz() -> None:
    clock = FakeClock(0.0)
    shipper = RetryLoop("shipper", Policy(first=5.0, cap=300.0), clock=clock)
    pusher = RetryLoop("pusher", Policy(first=10.0, cap=300.0), clock=clock)
    loops = [shipper, pusher]

    def degraded() -> str | None:
        late = [f"{x.name} failing" for x in loops if x.failing_for() > LOOP_DEGRADED_AFTER]
        return "; ".join(late) or None

    registry = CollectorRegistry()
    registry.register(UpstreamLoopCollector(lambda: loops))
    app = make_app(
        registry,
        FakeSource(),
        upstream=lambda: [x.snapshot() for x in loops],
        degraded=degraded,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        shipper.failed(0.0, "addMessages: HTTP 503: down")
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/healthz") as resp:
                assert (resp.status, await resp.text()) == (200, "ok\n")
            clock.now = LOOP_DEGRADED_AFTER + 1
            shipper.failed(clock.now, "addMessages: HTTP 503: down")
            async with http.get(url + "/healthz") as resp:
                assert resp.status == 200
                assert (await resp.text()).startswith("degraded: shipper failing")
            async with http.get(url + "/api/upstream") as resp:
                data = await resp.json()
            async with http.get(url + "/metrics") as resp:
                metrics = await resp.text()
    finally:
        await runner.cleanup()
    by_loop = {x["loop"]: x for x in data["loops"]}
    assert by_loop["shipper"]["state"] == "failing"
    assert by_loop["shipper"]["attempts"] == 2
    assert by_loop["shipper"]["last_error"] == "addMessages: HTTP 503: down"
    assert by_loop["pusher"]["state"] == "ok"
    assert 'muxd_upstream_loop_state{loop="shipper"} 0.0' in metrics
    assert 'muxd_upstream_loop_state{loop="pusher"} 1.0' in metrics
    assert 'muxd_upstream_loop_failures_total{loop="shipper"} 2.0' in metrics
    assert 'muxd_upstream_loop_next_attempt_seconds{loop="shipper"}' in metrics
