"""What the daemon's services report, counted: into the Prometheus metrics and the process's
:class:`~muxd.daemon_status.Tally`.

Each method is a callback handed to one service at wiring time (the intake, the shipper, the
publisher, the v1 pusher, the upstream client); they only count, never raise, never block.
"""

from __future__ import annotations

import asyncio

from muxd.daemon_status import Tally
from muxd.metrics import Metrics
from muxd.store import PendingMessage

# The event-loop lag probe: a 1 s timer whose lateness is exported.
LAG_PROBE_INTERVAL = 1.0


class MetricsSinks:
    def __init__(self, metrics: Metrics, tally: Tally) -> None:
        self.metrics = metrics
        self.tally = tally

    def part_stored(self, state: str) -> None:
        """A new part was journaled in ``state`` (the intake)."""
        self.metrics.count_part(state)

    def message_received(self) -> None:
        """A new part completed a message (the intake)."""
        self.metrics.sms_received.inc()
        self.tally.received += 1

    def delivered(self, batch: list[PendingMessage], when: float) -> None:
        """The upstream acknowledged ``batch`` at wall time ``when`` (the v2 shipper)."""
        metrics = self.metrics
        metrics.sms_forwarded.inc(len(batch))
        metrics.batch_size.observe(len(batch))
        for msg in batch:
            metrics.delivery_seconds.observe(max(0.0, when - msg.received_at))
        self.tally.count_forwarded(len(batch))

    def published(self, listed: int) -> None:
        """The numbers were sent upstream, ``listed`` of them (the v2 publisher)."""
        self.metrics.numbers_published.inc()
        self.metrics.numbers_listed.set(listed)

    def parked(self, _msg: PendingMessage, _reason: str) -> None:
        """The upstream refused a message for good (the v2 shipper)."""
        self.metrics.sms_parked.inc()
        self.tally.parked += 1

    def v1_pushed(self) -> None:
        """Onlinesim took one PUSH_SMS (the v1 pusher)."""
        self.tally.upstream_answered()
        self.tally.count_forwarded(1)

    def observe_upstream(self, endpoint: str, result: str, seconds: float) -> None:
        """One call to the upstream's ``endpoint`` ended with ``result`` (the v2 client)."""
        self.metrics.observe_upstream(endpoint, result, seconds)
        if result == "ok":
            self.tally.upstream_answered()

    async def watch_loop_lag(self) -> None:
        """Export how late a LAG_PROBE_INTERVAL timer fires (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            self.metrics.loop_lag.set(max(0.0, loop.time() - started - LAG_PROBE_INTERVAL))
