"""The ``muxd_cluster_*`` metrics of a box in a cluster, every series at 0 from the start.

Labels are bounded: ``call`` (the store's calls below), ``result``, ``via``. The fleet-wide
view is the sum over boxes (Prometheus scrapes every box).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

# The calls a box makes to PostgreSQL, as counted.
CALLS: Final = (
    "migrate",
    "warm",
    "heartbeat",
    "publish",
    "services",
    "reserve",
    "abandon",
    "finish",
    "expire",
    "operations",
    "listen",
    "leave",
)
# ok: answered; unavailable: refused, cut or late; skipped: not tried, PostgreSQL is known to be
# down and another call is finding out whether it is back.
CALL_RESULTS: Final = ("ok", "unavailable", "skipped")
# GET_NUMBER through the cluster: reserved; none fits; PostgreSQL unavailable or late (answered
# "no numbers"); abandoned (reserved, but the answer never reached Onlinesim: released).
RESERVATION_RESULTS: Final = ("reserved", "no_numbers", "unavailable", "abandoned")
# How this box learned of an operation whose SMS it pushes.
LEARNED_VIA: Final = ("notify", "reconcile")


class ClusterMetrics:
    def __init__(
        self, registry: CollectorRegistry, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self._renewed: float = monotonic()  # the last renewal, or the start
        self.calls = Counter(
            "muxd_cluster_calls",
            "Calls of this box to the cluster's PostgreSQL, by call and result",
            ["call", "result"],
            registry=registry,
        )
        for call in CALLS:
            for result in CALL_RESULTS:
                self.calls.labels(call, result)
        self.reservations = Counter(
            "muxd_cluster_reservations",
            "GET_NUMBER through the cluster by result",
            ["result"],
            registry=registry,
        )
        for result in RESERVATION_RESULTS:
            self.reservations.labels(result)
        self.learned = Counter(
            "muxd_cluster_operations_learned",
            "Operations whose SMS this box pushes, learned from the cluster, by how",
            ["via"],
            registry=registry,
        )
        for via in LEARNED_VIA:
            self.learned.labels(via)
        self.stopped = Counter(
            "muxd_cluster_stopped_on_error",
            "Times the cluster's tasks ended on an error other than PostgreSQL being away"
            " (started again after a floor; the box went on receiving)",
            registry=registry,
        )
        self.up = Gauge(
            "muxd_cluster_postgresql_up",
            "1 when the last call to the cluster's PostgreSQL was answered",
            registry=registry,
        )
        self.lease_age = Gauge(
            "muxd_cluster_lease_age_seconds",
            "Seconds since this box last renewed its lease (since start before the first)",
            registry=registry,
        )
        self.lease_age.set_function(lambda: max(0.0, self._monotonic() - self._renewed))
        self.numbers = Gauge(
            "muxd_cluster_numbers_published",
            "Sellable numbers this box last published to the cluster",
            registry=registry,
        )

    def call(self, call: str, result: str) -> None:
        self.calls.labels(call, result).inc()
        if result == "ok":
            self.up.set(1)
        elif result == "unavailable":
            self.up.set(0)

    def renewed(self) -> None:
        self._renewed = self._monotonic()
