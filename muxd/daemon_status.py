"""What the daemon shows: the status source behind the web pages and the readiness probes.

:class:`DaemonStatus` reads the services the daemon started (:class:`Services`: the journal,
the fleet, the upstream loops; any of them may not be running yet) and this process's flow
counts (:class:`Tally`, kept by :mod:`muxd.daemon_metrics`). It changes nothing it reads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from muxd import __version__
from muxd.fleet import Fleet
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal
from muxd.upstream.backoff import RetryLoop
from muxd.upstream.health import NumberHealth
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.sales import numbers_in_operation

# /readyz: the upstream counts as reachable if it answered successfully this recently (the
# publisher talks to it at least every numbers_interval, 5 minutes by default).
UPSTREAM_STALE = 900.0
# /healthz says "degraded" once an upstream loop has been failing this long (an outage shorter
# than this is ridden out by the loops' backoff without an alarm).
LOOP_DEGRADED_AFTER = 900.0


class Services(Protocol):
    """The services a daemon runs (None: not started, or not in this mode)."""

    journal: Journal | None
    fleet: Fleet | None
    shipper: Shipper | None
    v1: V1Service | None
    publisher: NumbersPublisher | None
    health: NumberHealth | None


@dataclass
class Tally:
    """This process's flow counts: written by the metrics sinks, read by the status."""

    started_at: float = field(default_factory=time.time)  # wall time, shown
    received: int = 0  # complete SMS journaled by this process
    forwarded: int = 0  # SMS acknowledged by the upstream
    parked: int = 0  # SMS taken out of delivery (refused upstream)
    last_upstream_ok: float | None = None  # wall time, shown
    upstream_ok_mono: float | None = None  # the same, monotonic: its age for /readyz
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set on each forward

    def upstream_answered(self) -> None:
        self.last_upstream_ok = time.time()
        self.upstream_ok_mono = time.monotonic()

    def count_forwarded(self, count: int) -> None:
        self.forwarded += count
        self.progress.set()


class DaemonStatus:
    """The :class:`muxd.status.StatusSource` of a running daemon, and its health and readiness."""

    def __init__(self, services: Services, tally: Tally) -> None:
        self._services = services
        self.tally = tally

    def ports(self) -> list[PortInfo]:
        fleet = self._services.fleet
        return list(fleet.ports.values()) if fleet else []

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        health = self._services.health
        return health.health_of(number) if health is not None else None

    def port_of(self, number: str) -> str | None:
        """The port whose SIM has ``number`` now (None: on no port)."""
        for info in self.ports():
            if info.number == number:
                return info.name
        return None

    def numbers(self) -> list[dict[str, Any]]:
        v1, publisher = self._services.v1, self._services.publisher
        if v1 is not None:
            return numbers_in_operation(self.ports(), v1.book)
        if publisher is None:
            return []
        out = []
        for number, entry in sorted(publisher.published.items()):
            row: dict[str, Any] = orjson.loads(entry)
            row["id"] = publisher.ids.get(number)
            out.append(row)
        return out

    async def outbox(self) -> dict[str, Any]:
        journal, shipper = self._services.journal, self._services.shipper
        stats: dict[str, Any] = await journal.stats() if journal else {}
        stats["backlog"] = journal.backlog if journal else 0
        stats.setdefault("messages_denied", 0)  # the deny-list's count, shown even at 0
        if shipper is not None:
            stats["last_error"] = shipper.last_error
            stats["auth_failed"] = shipper.auth_failed
        return stats

    def totals(self) -> dict[str, Any]:
        v1, journal, tally = self._services.v1, self._services.journal, self.tally
        extra = {"v1": v1.totals()} if v1 is not None else {}
        return extra | {
            "version": __version__,
            "uptime_s": round(time.time() - tally.started_at, 1),
            "received": tally.received,
            "forwarded": tally.forwarded,
            "parked": tally.parked,
            "backlog": journal.backlog if journal else 0,
            "last_upstream_ok": tally.last_upstream_ok,
            "upstream": self.upstream_state(),
        }

    def upstream_loops(self) -> list[RetryLoop]:
        """The retry state of every loop that talks to Onlinesim in this mode."""
        services = self._services
        loops: list[RetryLoop] = []
        if services.publisher is not None:
            loops.extend(services.publisher.loops)
        if services.shipper is not None:
            loops.append(services.shipper.loop)
        if services.v1 is not None:
            loops.append(services.v1.pusher.loop)
        return loops

    def upstream_state(self) -> list[dict[str, Any]]:
        return [loop.snapshot() for loop in self.upstream_loops()]

    def upstream_degraded(self) -> str | None:
        """Why the upstream side is degraded: loops failing longer than LOOP_DEGRADED_AFTER."""
        late = [
            f"{loop.name} failing for {loop.failing_for():.0f} s ({loop.last_error})"
            for loop in self.upstream_loops()
            if loop.failing_for() > LOOP_DEGRADED_AFTER
        ]
        return "; ".join(late) or None

    def problem(self) -> str | None:
        journal, shipper = self._services.journal, self._services.shipper
        if journal is not None and journal.failed is not None:
            return str(journal.failed)
        if shipper is not None and shipper.auth_failed:
            return f"upstream refuses the API key: {shipper.last_error}"
        return None

    def ready(self) -> str | None:
        problem = self.problem()
        if problem is not None:
            return problem
        if not any(p.status is PortStatus.READY for p in self.ports()):
            return "no port ready"
        v1 = self._services.v1
        if v1 is not None:
            # v1: Onlinesim polls us (GET_SERVICES every 2 minutes); the age is monotonic.
            age = v1.last_request_age()
            if age is None or age > UPSTREAM_STALE:
                return "upstream not reached recently"
            return None
        last = self.tally.upstream_ok_mono
        if last is None or time.monotonic() - last > UPSTREAM_STALE:
            return "upstream not reached recently"
        return None

    async def wait_forwarded(self, count: int) -> None:
        """Return once ``count`` SMS were acknowledged and marked delivered (tests, demo)."""
        tally = self.tally
        while tally.forwarded < count:
            tally.progress.clear()
            await tally.progress.wait()

    def live_counts(self, info: PortInfo) -> tuple[int, int]:
        """A port's AT timeouts and resyncs, its open session's included."""
        fleet = self._services.fleet
        session = fleet.sessions.get(info.path) if fleet else None
        if session is None:
            return info.at_timeouts, info.resyncs
        return info.at_timeouts + session.timeouts, info.resyncs + session.resyncs
