"""Wiring: config -> journal, fleet, upstream (v2 publisher + shipper, or the v1 service), HTTP
endpoint; one TaskGroup.

The parts live elsewhere: the ports' sink is the store's :class:`~muxd.store.sink.Intake`; the
journal's upkeep is :mod:`muxd.store.maintenance`; what the services report is counted by
:mod:`muxd.daemon_metrics`; what the web pages and probes show is :mod:`muxd.daemon_status`.

The top-level services share one TaskGroup: if one dies the daemon exits (and systemd restarts
it). Ports are isolated inside the fleet and never take the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd import systemd
from muxd.config import Config, parse_listen
from muxd.daemon_metrics import MetricsSinks
from muxd.daemon_status import DaemonStatus, Tally
from muxd.deny import build_deny
from muxd.errors import first_muxd_error, listen_error
from muxd.filter_library import resolve_filters
from muxd.fleet import Fleet
from muxd.metrics import (
    FleetCollector,
    HealthCollector,
    Metrics,
    UpstreamLoopCollector,
)
from muxd.numbers import load_numbers
from muxd.store import Journal
from muxd.store.maintenance import DAY, JournalMaintenance, watch_journal
from muxd.store.sink import Intake
from muxd.upstream.health import NumberHealth
from muxd.upstream.http_client import HttpClient
from muxd.upstream.learned import Learned
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.metrics import EarningsCollector, MetricsV1Observer
from muxd.upstream.v1.push_policy import PushPolicy
from muxd.upstream.v1.sales import Earnings
from muxd.upstream.v2 import V2Client
from muxd.web import STATUS_CACHE_TTL, make_app, make_metrics_app

if TYPE_CHECKING:
    from muxd.cluster.box import ClusterBox

LOGGER = logging.getLogger(__name__)

# Upstream connection pool: one box talks to one Onlinesim endpoint.
UPSTREAM_CONNECTIONS = 8


class Daemon:
    """Builds the services from the config and runs them in one TaskGroup (:meth:`run`)."""

    def __init__(
        self,
        cfg: Config,
        *,
        registry: CollectorRegistry | None = None,
        status_cache_ttl: float = STATUS_CACHE_TTL,
    ) -> None:
        self.cfg = cfg
        # How long /api/outbox and /api/totals answers are shared between callers (0: never).
        self.status_cache_ttl = status_cache_ttl
        self.metrics = Metrics(registry)
        self.metrics.start_at_zero(cfg.upstream.api)
        # SMS kept but never forwarded (raises ConfigError when deny.file went bad since load).
        self.deny = build_deny(cfg.deny)
        self.metrics.start_denied(self.deny.names)
        self.journal: Journal | None = None
        self.fleet: Fleet | None = None
        self.shipper: Shipper | None = None
        self.v1: V1Service | None = None
        self.cluster: ClusterBox | None = None  # [cluster] with API v1
        self.http_port: int | None = None
        self.metrics_port: int | None = None  # http.metrics_listen's port, when configured
        self.started = asyncio.Event()  # set once every service is running
        self.publisher: NumbersPublisher | None = None
        self.health: NumberHealth | None = None  # upstream.check_numbers
        self.tally = Tally()  # this process's flow counts
        self.sinks = MetricsSinks(self.metrics, self.tally)  # what the services report
        self.status = DaemonStatus(self, self.tally)  # what the web pages and probes show

    def _maintenance(self, journal: Journal) -> JournalMaintenance:
        return JournalMaintenance(
            journal,
            retention_days=self.cfg.journal.retention_days,
            reassembly_timeout=self.cfg.journal.reassembly_timeout,
        )

    def _push_policy(self) -> PushPolicy:
        """PUSH_SMS where the docs disagree: the configured readings, and what was learned."""
        cfg = self.cfg
        return PushPolicy(
            success=cfg.v1.push_success,
            gzip_body=cfg.v1.gzip_push,
            phone_type=cfg.upstream.phone_type,
            rent_case=cfg.upstream.rent_case,
            retry_verdicts=cfg.v1.retry_verdicts,
            learned=Learned.in_state_dir(cfg.state_dir),
            reading=self.metrics.count_reading,
        )

    def _upstream_tasks(
        self, http: aiohttp.ClientSession, lean: HttpClient, journal: Journal, fleet: Fleet
    ) -> dict[str, Coroutine[Any, Any, None]]:
        """The services that talk to Onlinesim: v2 publisher + shipper (their requests by the
        lean HTTP/1.1 client: one per SMS at low load), or the v1 service."""
        cfg = self.cfg
        self.metrics.set_box(cfg.cluster.box_name if cfg.cluster is not None else None)
        if cfg.upstream.api == "v1":
            # Onlinesim calls us; the v1 pusher consumes the journal's messages.
            status = self.status
            earnings = Earnings(cfg.v1.services, status.port_of)
            self.metrics.registry.register(EarningsCollector(earnings, status.ports))
            # The v1 filters in effect: each service's own, plus the built-in patterns asked for.
            v1 = msgspec.structs.replace(cfg.v1, filter=resolve_filters(cfg.v1))
            observer = MetricsV1Observer(self.metrics, self.sinks.v1_pushed, earnings)
            self.v1 = V1Service(
                v1,
                cfg.upstream.api_key,
                journal,
                status.ports,
                http,
                observer=observer,
                sms_id=cfg.v1.sms_id,
                retry_verdicts=cfg.v1.retry_verdicts,
                status1_blocks=cfg.v1.status1_blocks,
                id_bits=cfg.v1.id_bits,
                retention=cfg.journal.retention_days * DAY,
                push_policy=self._push_policy(),
            )
            tasks = {"v1": self.v1.run()}
            if cfg.cluster is not None:
                # Several boxes, one partner account: the v1 actions go through PostgreSQL.
                from muxd.cluster.box import ClusterBox
                from muxd.cluster.supervise import supervise

                self.cluster = ClusterBox(
                    cfg.cluster,
                    v1,
                    journal,
                    self.status.ports,
                    fleet.changed,
                    self.v1.names,
                    self.metrics.registry,
                    on_operations=self.v1.operations_changed,
                    # The sales of its SIMs, whichever box answered their FINISH.
                    on_finished=observer.finished,
                )
                self.v1.handlers.backend = self.cluster.backend
                box = self.cluster
                tasks["cluster"] = supervise(
                    "v1", box.run, on_stopped=lambda _why: box.metrics.stopped.inc()
                )
            return tasks
        client = V2Client(
            lean,
            cfg.upstream.url,
            cfg.upstream.api_key,
            test=cfg.upstream.test,
            observer=self.sinks.observe_upstream,
            reading=self.metrics.count_reading,
            check_work_method=cfg.upstream.check_work_method,
            learned=Learned.in_state_dir(cfg.state_dir),
        )
        cluster = None
        if cfg.cluster is not None:  # this box's lease and numbers; list mode: the fleet's list
            from muxd.cluster.supervise import supervise
            from muxd.cluster.v2list import ClusterV2

            cluster = ClusterV2.from_config(cfg, self.status.ports, journal)
        self.publisher = publisher = NumbersPublisher(
            client,
            self.status.ports,
            fleet.changed,
            journal,
            interval=cfg.upstream.numbers_interval,
            rent=cfg.upstream.rent,
            incremental=cfg.upstream.numbers_mode == "incremental",
            on_published=self.sinks.published,
            hold=cfg.modems.unregistered_hold,
            fleet=cluster.fleet if cluster is not None else None,
        )
        self.shipper = shipper = Shipper(
            journal,
            client,
            batch_max=cfg.upstream.batch_max,
            batch_delay=cfg.upstream.batch_delay,
            on_delivered=self.sinks.delivered,
            on_parked=self.sinks.parked,
            republish=publisher.republish,
            listed=publisher.listed_numbers,
        )
        tasks = {"publisher": publisher.run(), "shipper": shipper.run()}
        if cluster is not None:
            if cluster.fleet is not None:
                cluster.fleet.on_change = publisher.request
            tasks["cluster"] = supervise("v2 list", cluster.run)
        if cfg.upstream.check_numbers:
            self.health = NumberHealth(
                client,
                self.status.ports,
                publisher.listed_numbers,
                interval=cfg.upstream.check_interval,
            )
            self.metrics.registry.register(
                HealthCollector(self.status.ports, self.health.health_of)
            )
            tasks["number-health"] = self.health.run()
        return tasks

    async def run(self) -> None:
        cfg = self.cfg
        numbers = load_numbers(cfg.numbers.file)
        self.journal = journal = await Journal.open(
            Path(cfg.state_dir),
            on_commit=self.metrics.observe_commit,
            deny=self.deny,
            on_denied=self.metrics.count_denied,
        )
        self.fleet = fleet = Fleet(
            cfg.modems.ports,
            baudrate=cfg.modems.baudrate,
            sink=Intake(
                journal,
                on_part=self.sinks.part_stored,
                on_message=self.sinks.message_received,
            ),
            numbers=numbers,
            sweep_interval=cfg.modems.sweep_interval,
            rescan_interval=cfg.modems.rescan_interval,
            ussd=cfg.numbers.ussd,
        )
        status = self.status
        self.metrics.registry.register(FleetCollector(status.ports, status.live_counts))
        self.metrics.registry.register(UpstreamLoopCollector(status.upstream_loops))
        self.metrics.backlog.set_function(lambda: journal.backlog)
        connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS)
        http_cfg = cfg.http
        runner = web.AppRunner(
            make_app(
                self.metrics.registry,
                status,
                token=http_cfg.token,
                hosts=http_cfg.hosts,
                upstream=status.upstream_state,
                degraded=status.upstream_degraded,
                cache_ttl=self.status_cache_ttl,
            ),
            access_log=None,
        )
        metrics_runner: web.AppRunner | None = None
        if http_cfg.metrics_listen:
            metrics_runner = web.AppRunner(
                make_metrics_app(self.metrics.registry, hosts=http_cfg.hosts), access_log=None
            )
        try:
            # No cookies: both APIs authenticate per request (and a jar costs CPU on every call).
            async with (
                aiohttp.ClientSession(
                    connector=connector, cookie_jar=aiohttp.DummyCookieJar()
                ) as http,
                HttpClient() as lean,
            ):
                self.http_port = await listen(runner, "http.listen", http_cfg.listen)
                if metrics_runner is not None:
                    self.metrics_port = await listen(
                        metrics_runner, "http.metrics_listen", http_cfg.metrics_listen
                    )
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(fleet.run(), name="fleet")
                        tasks = self._upstream_tasks(http, lean, journal, fleet)
                        for name, coro in tasks.items():
                            tg.create_task(coro, name=name)
                        tg.create_task(self.sinks.watch_loop_lag(), name="loop-lag")
                        tg.create_task(self._maintenance(journal).run(), name="maintenance")
                        tg.create_task(watch_journal(journal, fleet.intake), name="journal-watch")
                        watchdog = systemd.watchdog_interval()
                        if watchdog is not None:
                            tg.create_task(systemd.kick_watchdog(watchdog), name="watchdog")
                        self.started.set()
                        systemd.notify("READY=1")
                except BaseExceptionGroup as group:
                    # A service that gives up (journal unwritable, v1 listen address taken)
                    # ends the daemon with its own one-line reason, not a group traceback.
                    first = first_muxd_error(group)
                    if first is None:
                        raise
                    raise first from None
        finally:
            systemd.notify("STOPPING=1")
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await runner.cleanup()
            await journal.close()


async def listen(runner: web.AppRunner, key: str, address: str) -> int:
    """Serve ``runner`` on ``address`` (``host:port``, the config key ``key``); the bound port.

    An address in use is a ConfigError naming the key, so ``muxd run`` says it in one line.
    """
    await runner.setup()
    host, port = parse_listen(address)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise listen_error(key, address, exc) from None
    bound = int(runner.addresses[0][1])
    LOGGER.info("%s: serving http://%s:%s/", key, host, bound)
    return bound


async def run_until_signalled(daemon: Daemon) -> None:
    """Run the daemon; SIGTERM and SIGINT stop it gracefully (exit status 0).

    Cancelling the daemon cancels the fleet first (no new reads), ports are closed, pending
    journal commits finish, and undelivered SMS stay in the journal for the next start.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(daemon.run(), name="daemon")
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    LOGGER.info("stopped")
