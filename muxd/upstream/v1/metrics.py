"""The v1 service's metrics: its events into the registry, and sales and earnings at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from muxd.metrics import V1_ACTIONS, V1_PUSH_RESULTS, V1_RESULTS, Metrics, bounded_label
from muxd.ports import PortInfo
from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.sales import NO_PORT, Earnings

if TYPE_CHECKING:
    from muxd.upstream.v1.operations import Operation


class MetricsV1Observer(V1Observer):
    """Forwards the v1 service's events to the registry."""

    def __init__(
        self,
        metrics: Metrics,
        on_success: Callable[[], None] | None = None,
        earnings: Earnings | None = None,
    ) -> None:
        self._m = metrics
        self._on_success = on_success
        self._earnings = earnings

    def request(self, action: str, result: str, seconds: float) -> None:
        action = bounded_label(action, V1_ACTIONS, "unknown")
        self._m.v1_requests.labels(action, bounded_label(result, V1_RESULTS, "error")).inc()
        if action == "GET_NUMBER":
            self._m.v1_get_number_seconds.observe(seconds)

    def push(self, result: str) -> None:
        self._m.v1_pushes.labels(bounded_label(result, V1_PUSH_RESULTS, "other")).inc()
        if result == "success":
            self._m.sms_forwarded.inc()
            if self._on_success is not None:
                self._on_success()

    def operations_open(self, count: int) -> None:
        self._m.v1_operations_open.set(count)

    def missing_user_agent(self) -> None:
        self._m.v1_no_user_agent.inc()

    def finished(self, op: Operation, status: int, finish_sum: float | None) -> None:
        if self._earnings is not None:
            self._earnings.finished(op, status, finish_sum)


class EarningsCollector(Collector):
    """v1 sales and RUB earned since start, read at scrape time. Every configured service has
    a series from the start (at 0, per port of the fleet), so ``increase()`` sees the first
    sale; labels are bounded (configured services, the fleet's ports)."""

    def __init__(self, earnings: Earnings, ports: Callable[[], Iterable[PortInfo]]) -> None:
        self._earnings = earnings
        self._ports = ports

    def collect(self) -> Iterator[Metric]:
        earnings = self._earnings
        earned = CounterMetricFamily(
            "muxd_v1_earned",
            "RUB earned by operations finished with success (status 3), by service and port",
            labels=["service", "port"],
        )
        ports = {p.name for p in self._ports()} | {NO_PORT}
        values = dict(earnings.earned)
        for service in earnings.services:
            for port in ports:
                values.setdefault((service, port), 0.0)
        for (service, port), amount in sorted(values.items()):
            earned.add_metric([service, port], amount)
        sales = CounterMetricFamily(
            "muxd_v1_sales", "Operations finished with success (status 3)", labels=["service"]
        )
        for service, count in earnings.sales.items():
            sales.add_metric([service], count)
        yield from (earned, sales)
