"""A one-hour upstream outage on an injected clock, shared by the loop tests and the benchmark.

The upstream is a real aiohttp server on loopback (muxd's Onlinesim stand-in for v2, a small
PUSH_SMS endpoint for v1) reached through a real aiohttp session whose resolver maps the
upstream's ``.invalid`` host name to it. The outage has four phases: the server answers 503,
then drops every connection, then the name resolves to a closed port (connection refused),
then the name does not resolve at all (the real resolver asked about the ``.invalid`` name).
Every connection attempt resolves the name (no DNS cache, no keep-alive), so the resolver
counts attempts even when no server sees them.

Time is virtual: the loops sleep on a :class:`~muxd_sim.clock.FakeClock`, which moves only when
every loop is asleep (and the test says the loop is idle), straight to the earliest wake-up. So
the hour passes in a second of real time and no request is ever hidden by a jump of the clock.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from muxd_sim.clock import FakeClock
from muxd_sim.onlinesim import Onlinesim

HOST = "onlinesim.invalid"
# The outage: each phase this long (simulated seconds), one hour in total.
PHASE_SECONDS = 900.0
Phase = Literal["up", "503", "reset", "refused", "dns"]
PHASES: tuple[Phase, ...] = ("503", "reset", "refused", "dns")


class PhaseResolver(AbstractResolver):
    """Resolves :data:`HOST` to the server, to a closed port, or (``dns``) not at all."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        # A bound socket that never listens: connecting to its port is refused, and the port
        # stays ours for the whole test.
        self._closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed.bind(("127.0.0.1", 0))
        self.closed_port: int = self._closed.getsockname()[1]
        self.phase: Phase = "up"
        self.attempts: Counter[str] = Counter()  # phase -> connection attempts
        self._real = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.attempts[self.phase] += 1
        if self.phase == "dns":
            return await self._real.resolve(host, port, family)  # raises: .invalid
        target = self.closed_port if self.phase == "refused" else self.server_port
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": target,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        self._closed.close()
        await self._real.close()


def session(resolver: PhaseResolver) -> aiohttp.ClientSession:
    """A client session whose every request resolves the name and opens a connection."""
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    return aiohttp.ClientSession(connector=connector)


@dataclass
class PushEndpoint:
    """A PUSH_SMS endpoint: SUCCESS when up, 503 or a dropped connection during the outage."""

    phase: Phase = "up"
    requests: Counter[str] = field(default_factory=Counter)  # phase -> requests seen
    accepted: list[Any] = field(default_factory=list)  # smsId of each SUCCESS answer
    port: int = 0
    retry_after: str | None = None  # sent with each 503 when set
    _runner: web.AppRunner | None = None

    async def _push(self, request: web.Request) -> web.StreamResponse:
        phase = self.phase  # the phase the request came in (a test may change it meanwhile)
        self.requests[phase] += 1
        body = await request.json()
        if phase == "503":
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.Response(status=503, text="unavailable", headers=headers)
        if phase != "up":  # reset: no answer at all
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        self.accepted.append(body["smsId"])
        return web.json_response({"status": "SUCCESS"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/PUSH_SMS", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def set_phase(
    phase: Phase, resolver: PhaseResolver, *, stub: Onlinesim | None = None,
    push: PushEndpoint | None = None,
) -> None:  # fmt: skip
    """Put the upstream into ``phase`` (``up`` ends the outage)."""
    resolver.phase = phase
    if stub is not None:
        stub.set_down(phase == "503")
        stub.resets.clear()
        if phase == "reset":
            stub.reset_connections(10**9)
    if push is not None:
        push.phase = phase


async def one_hour_outage(
    clock: FakeClock,
    resolver: PhaseResolver,
    *,
    stub: Onlinesim | None = None,
    push: PushEndpoint | None = None,
    idle: Callable[[], bool] = lambda: True,
    during: Callable[[Phase], Any] | None = None,
) -> None:
    """Run the four phases of :data:`PHASES` back to back, then bring the upstream back.
    ``during(phase)`` runs at each phase's start (to make changes while the upstream is out)."""
    for phase in PHASES:
        set_phase(phase, resolver, stub=stub, push=push)
        if during is not None:
            result = during(phase)
            if asyncio.iscoroutine(result):
                await result
        await clock.run_for(PHASE_SECONDS, idle)
    set_phase("up", resolver, stub=stub, push=push)


def upstream_requests(stub: Onlinesim, since: int = 0) -> Counter[str]:
    """Requests the stand-in saw after the first ``since``, by endpoint."""
    return Counter(str(r.endpoint) for r in stub.requests[since:])
