"""Prometheus metrics: one registry, injected everywhere.

Counters are incremented where things happen; per-port state is read from the fleet's table at
scrape time by :class:`FleetCollector`. Labels stay bounded: ``port``, ``operator``,
``endpoint``, ``result`` — never a phone number, IMSI or message id.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from muxd import __version__
from muxd.ports import PortInfo, PortStatus
from muxd.upstream.backoff import RetryLoop
from muxd.upstream.readers import KNOWN_READINGS

# No ``*_created`` series: they double the series count and no dashboard or rule reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Every label value a counter can take is created at 0 when muxd starts: a series born at its first
# event starts at 1, and ``increase()``/``rate()`` never see that first event (one parked PDU would
# not fire the alert on parked PDUs).
PART_RESULTS = ("assembled", "waiting", "status_report", "submit", "parked")
# Upstream request results, as bounded classes (never a raw status code).
UPSTREAM_RESULTS = ("ok", "refused", "redirect", "http_4xx", "http_5xx", "network")
V2_ENDPOINTS = (
    "sendNumbersOnline",
    "checkWork",
    "addNumber",
    "removeNumber",
    "addMessages",
    "addMessage",
)
V1_ACTIONS = ("GET_SERVICES", "GET_NUMBER", "FINISH_ACTIVATION", "unknown")
V1_RESULTS = (
    "success",
    "no_numbers",
    "unknown_operation",
    "bad_request",
    "unauthorized",
    "error",
)
V1_PUSH_RESULTS = (
    "success",
    "retry",
    "unassigned",
    "filtered",
    "no_operation",
    "bad_service",
    "ignored",
    "service_ban",
    "other",
)


def upstream_result(raw: str) -> str:
    """The v2 client's result (``ok``, ``refused``, ``error`` or an HTTP status) as a class."""
    if raw in UPSTREAM_RESULTS:
        return raw
    if raw.isdigit():
        status = int(raw)
        if 300 <= status < 400:
            return "redirect"
        if 400 <= status < 500:
            return "http_4xx"
        if status >= 500:
            return "http_5xx"
        return "refused"  # a 200 whose answer was not a success (the client says "ok" then)
    return "network"


def bounded_label(value: str, known: tuple[str, ...], other: str) -> str:
    return value if value in known else other


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # CPU, memory and open descriptors of this process (process_* series).
        ProcessCollector(registry=r)
        self.sms_parts = Counter(
            "muxd_sms_parts_total", "SMS parts read from modems and journaled", ["result"],
            registry=r,
        )  # fmt: skip
        self.sms_received = Counter(
            "muxd_sms_received_total", "Complete SMS messages received and journaled", registry=r
        )
        self.sms_forwarded = Counter(
            "muxd_sms_forwarded_total", "SMS acknowledged by the upstream", registry=r
        )
        self.sms_parked = Counter(
            "muxd_sms_parked_total", "SMS taken out of delivery, kept for an operator", registry=r
        )
        self.sms_denied = Counter(
            "muxd_sms_denied_total",
            "SMS kept and never forwarded: the deny-list rule that matched",
            ["rule"],
            registry=r,
        )
        self._denied_children: dict[str, Counter] = {}
        self.upstream_requests = Counter(
            "muxd_upstream_requests_total",
            "Requests to the upstream by endpoint and result",
            ["endpoint", "result"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "muxd_upstream_request_seconds",
            "Upstream request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_commit_seconds = Histogram(
            "muxd_journal_commit_seconds",
            "Duration of one journal group commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_ops = Counter(
            "muxd_journal_operations_total", "Operations committed to the journal", registry=r
        )
        self.delivery_seconds = Histogram(
            "muxd_delivery_latency_seconds",
            "From reading an SMS off the modem to the upstream's acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.numbers_published = Counter(
            "muxd_numbers_published_total", "Successful number-list publications", registry=r
        )
        self.numbers_listed = Gauge(
            "muxd_numbers_listed", "Numbers in the last successful publication", registry=r
        )
        self.batch_size = Histogram(
            "muxd_upstream_batch_size",
            "SMS per upstream delivery request",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.backlog = Gauge(
            "muxd_journal_backlog_messages",
            "Messages journaled but not yet acknowledged by the upstream",
            registry=r,
        )
        self.loop_lag = Gauge(
            "muxd_event_loop_lag_seconds", "How late the event loop ran a 1 s timer", registry=r
        )
        self.v1_operations_open = Gauge("muxd_v1_operations_open", "v1 operations open", registry=r)
        self.v1_get_number_seconds = Histogram(
            "muxd_v1_get_number_seconds",
            "v1 GET_NUMBER answer time",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.v1_requests = Counter(
            "muxd_v1_requests_total", "v1 server requests", ["action", "result"], registry=r
        )
        self.v1_pushes = Counter(
            "muxd_v1_pushes_total", "PUSH_SMS outcomes", ["result"], registry=r
        )
        self.v1_no_user_agent = Counter(
            "muxd_v1_requests_without_user_agent_total",
            "v1 requests without a User-Agent header (tolerated)",
            registry=r,
        )
        self.upstream_readings = Counter(
            "muxd_upstream_reading_total",
            "Upstream answers by the reading of a loosely documented field",
            ["field", "reading"],
            registry=r,
        )
        self._reading_children = {
            (name, value): self.upstream_readings.labels(name, value)
            for name, values in KNOWN_READINGS.items()
            for value in values
        }
        self.build_info = Gauge("muxd_build_info", "muxd version", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        # The box this muxd runs on ([cluster] box, else the host name): Prometheus scrapes each
        # box as its own target, so no other series carries it; dashboards map box -> instance.
        self.box_info = Gauge("muxd_box_info", "The box this muxd runs on", ["box"], registry=r)
        self._upstream_children: dict[tuple[str, str], Counter] = {}
        self._upstream_timing: dict[str, Histogram] = {}
        self._part_children: dict[str, Counter] = {}
        for state in PART_RESULTS:
            self._part_children[state] = self.sms_parts.labels(state)

    def start_at_zero(self, api: str) -> None:
        """Create the label values of the API in use at 0 (see PART_RESULTS)."""
        if api == "v2":
            for endpoint in V2_ENDPOINTS:
                self._upstream_timing[endpoint] = self.upstream_seconds.labels(endpoint)
                for result in UPSTREAM_RESULTS:
                    key = (endpoint, result)
                    self._upstream_children[key] = self.upstream_requests.labels(*key)
        else:
            for action in V1_ACTIONS:
                for result in V1_RESULTS:
                    self.v1_requests.labels(action, result)
            for result in V1_PUSH_RESULTS:
                self.v1_pushes.labels(result)

    def set_box(self, name: str | None) -> None:
        """``muxd_box_info{box=NAME} 1`` (None: the host name)."""
        self.box_info.clear()
        self.box_info.labels(name or socket.gethostname()).set(1)

    def start_denied(self, rules: tuple[str, ...]) -> None:
        """Create the deny-list's rules (names from the config: bounded) at 0."""
        for rule in rules:
            self._denied_children[rule] = self.sms_denied.labels(rule)

    def count_denied(self, rule: str) -> None:
        # Only the configured rules are label values; anything else would be a bug.
        if (child := self._denied_children.get(rule)) is not None:
            child.inc()

    def observe_upstream(self, endpoint: str, result: str, seconds: float) -> None:
        # Labelled children are looked up once: ``labels()`` takes a lock and validates.
        key = (endpoint, upstream_result(result))
        if (requests := self._upstream_children.get(key)) is None:
            requests = self._upstream_children[key] = self.upstream_requests.labels(*key)
        if (timing := self._upstream_timing.get(endpoint)) is None:
            timing = self._upstream_timing[endpoint] = self.upstream_seconds.labels(endpoint)
        requests.inc()
        timing.observe(seconds)

    def count_reading(self, field: str, reading: str) -> None:
        """One answer read as ``reading`` (label values are the readers' known ones)."""
        if (child := self._reading_children.get((field, reading))) is None:
            child = self._reading_children[(field, reading)] = self.upstream_readings.labels(
                field, reading
            )
        child.inc()

    def count_part(self, state: str) -> None:
        if (child := self._part_children.get(state)) is None:
            child = self._part_children[state] = self.sms_parts.labels(state)
        child.inc()

    def observe_commit(self, seconds: float, ops: int) -> None:
        self.journal_commit_seconds.observe(seconds)
        self.journal_ops.inc(ops)


class FleetCollector(Collector):
    """Per-port state, read from the fleet's table at scrape time."""

    def __init__(
        self,
        ports: Callable[[], Iterable[PortInfo]],
        live_counts: Callable[[PortInfo], tuple[int, int]],
    ) -> None:
        self._ports = ports
        self._live_counts = live_counts  # (at timeouts, resyncs) including the open session

    def collect(self) -> Iterator[Metric]:
        ports = list(self._ports())
        by_state = GaugeMetricFamily("muxd_ports", "Ports by state", labels=["state"])
        counts = {status: 0 for status in PortStatus}
        for info in ports:
            counts[info.status] += 1
        for status, n in counts.items():
            by_state.add_metric([status.value], n)
        yield by_state
        up = GaugeMetricFamily("muxd_ports_up", "Ports initialised and reading SMS")
        up.add_metric([], counts[PortStatus.READY])
        yield up
        sellable = GaugeMetricFamily("muxd_ports_sellable", "Ports whose number can be sold")
        sellable.add_metric([], sum(1 for p in ports if p.sellable))
        yield sellable

        labels = ["port", "operator"]
        port_up = GaugeMetricFamily("muxd_port_up", "1 when the port is ready", labels=labels)
        registered = GaugeMetricFamily(
            "muxd_port_registered", "1 when the modem is registered", labels=labels
        )
        signal = GaugeMetricFamily("muxd_port_signal_dbm", "Signal strength", labels=labels)
        received = CounterMetricFamily(
            "muxd_port_sms_received", "SMS received on the port", labels=labels
        )
        last_sms = GaugeMetricFamily(
            "muxd_port_last_sms_timestamp_seconds", "UNIX time of the last SMS", labels=labels
        )
        timeouts = CounterMetricFamily(
            "muxd_port_at_timeouts", "AT commands that timed out", labels=labels
        )
        resyncs = CounterMetricFamily(
            "muxd_port_at_resyncs", "Garbage dropped by the AT parser", labels=labels
        )
        for info in ports:
            lv = [info.name, str(info.operator or "")]
            port_up.add_metric(lv, 1 if info.status is PortStatus.READY else 0)
            registered.add_metric(lv, 1 if info.registered else 0)
            if info.signal_dbm is not None:
                signal.add_metric(lv, info.signal_dbm)
            received.add_metric(lv, info.sms_received)
            if info.last_sms_at is not None:
                last_sms.add_metric(lv, info.last_sms_at)
            at_timeouts, at_resyncs = self._live_counts(info)
            timeouts.add_metric(lv, at_timeouts)
            resyncs.add_metric(lv, at_resyncs)
        yield from (port_up, registered, signal, received, last_sms, timeouts, resyncs)


class UpstreamLoopCollector(Collector):
    """Each upstream loop's retry state, read at scrape time (label ``loop``: its name)."""

    def __init__(self, loops: Callable[[], Iterable[RetryLoop]]) -> None:
        self._loops = loops

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "muxd_upstream_loop_state", "1 when the loop's last attempt succeeded", labels=["loop"]
        )
        failures = CounterMetricFamily(
            "muxd_upstream_loop_failures", "Failed attempts of the loop", labels=["loop"]
        )
        failing = GaugeMetricFamily(
            "muxd_upstream_loop_failing_seconds",
            "How long the loop has been failing (0 when ok)",
            labels=["loop"],
        )
        next_attempt = GaugeMetricFamily(
            "muxd_upstream_loop_next_attempt_seconds",
            "Seconds until the loop may try again (0: now)",
            labels=["loop"],
        )
        for loop in self._loops():
            state.add_metric([loop.name], 1 if loop.ok else 0)
            failures.add_metric([loop.name], loop.failures_total)
            failing.add_metric([loop.name], loop.failing_for())
            next_attempt.add_metric([loop.name], loop.wait())
        yield from (state, failures, failing, next_attempt)


class HealthCollector(Collector):
    """v2 checkNumber results per port (``upstream.check_numbers``), read at scrape time."""

    def __init__(
        self,
        ports: Callable[[], Iterable[PortInfo]],
        health_of: Callable[[str | None], dict[str, Any] | None],
    ) -> None:
        self._ports = ports
        self._health_of = health_of

    def collect(self) -> Iterator[Metric]:
        labels = ["port"]
        banned = GaugeMetricFamily(
            "muxd_port_number_banned", "1 when Onlinesim says the number is banned", labels=labels
        )
        errors = GaugeMetricFamily(
            "muxd_port_number_errors",
            "Failed operations Onlinesim counts on the number",
            labels=labels,
        )
        replace = GaugeMetricFamily(
            "muxd_port_number_replace",
            "1 when Onlinesim says the rent is finished: the SIM earns nothing more",
            labels=labels,
        )
        for info in self._ports():
            health = self._health_of(info.number)
            if health is None:
                continue
            banned.add_metric([info.name], 1 if health["banned"] else 0)
            errors.add_metric([info.name], health["errors"])
            replace.add_metric([info.name], 1 if health["replace"] else 0)
        yield from (banned, errors, replace)
