"""Wiring: config -> journal, fleet, upstream (v2 publisher + shipper, or the v1 service), HTTP
endpoint; one TaskGroup.

The top-level services share one TaskGroup: if one dies the daemon exits (and systemd restarts
it). Ports are isolated inside the fleet and never take the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from muxd import __version__, systemd
from muxd.config import Config, parse_listen
from muxd.deny import build_deny
from muxd.errors import JournalError, first_muxd_error, listen_error
from muxd.filter_library import resolve_filters
from muxd.fleet import Fleet
from muxd.metrics import (
    FleetCollector,
    HealthCollector,
    Metrics,
    UpstreamLoopCollector,
)
from muxd.numbers import load_numbers
from muxd.ports import PortInfo, PortStatus
from muxd.store import Journal, PartIn, PendingMessage
from muxd.upstream.backoff import RetryLoop
from muxd.upstream.health import NumberHealth
from muxd.upstream.learned import Learned
from muxd.upstream.publisher import NumbersPublisher
from muxd.upstream.shipper import Shipper
from muxd.upstream.v1 import V1Service
from muxd.upstream.v1.metrics import EarningsCollector, MetricsV1Observer
from muxd.upstream.v1.push_policy import PushPolicy
from muxd.upstream.v1.sales import Earnings, numbers_in_operation
from muxd.upstream.v2 import V2Client
from muxd.web import make_app, make_metrics_app

LOGGER = logging.getLogger(__name__)

# Upstream connection pool: one box talks to one Onlinesim endpoint.
UPSTREAM_CONNECTIONS = 8
# The event-loop lag probe: a 1 s timer whose lateness is exported.
LAG_PROBE_INTERVAL = 1.0
# Journal housekeeping: recount the backlog every minute, prune delivered messages hourly.
MAINTENANCE_INTERVAL = 60.0
PRUNE_EVERY = 60  # maintenance rounds
DAY = 86400.0
# An SMS held because its number is off the upstream's list (port down, SIM out) waits this
# long for the number to come back before it is parked for an operator.
HOLD_TIMEOUT = DAY
# After a failed journal commit: probe with a real write every 5 s; give up (exit non-zero, so
# the service manager restarts us and the alarm is loud) after 10 minutes.
JOURNAL_PROBE_INTERVAL = 5.0
JOURNAL_GIVE_UP = 600.0
# /readyz: the upstream counts as reachable if it answered successfully this recently (the
# publisher talks to it at least every numbers_interval, 5 minutes by default).
UPSTREAM_STALE = 900.0
# /healthz says "degraded" once an upstream loop has been failing this long (an outage shorter
# than this is ridden out by the loops' backoff without an alarm).
LOOP_DEGRADED_AFTER = 900.0


class Daemon:
    def __init__(self, cfg: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics(registry)
        self.metrics.start_at_zero(cfg.upstream.api)
        # SMS kept but never forwarded (raises ConfigError when deny.file went bad since load).
        self.deny = build_deny(cfg.deny)
        self.metrics.start_denied(self.deny.names)
        self.journal: Journal | None = None
        self.fleet: Fleet | None = None
        self.shipper: Shipper | None = None
        self.v1: V1Service | None = None
        self.http_port: int | None = None
        self.metrics_port: int | None = None  # http.metrics_listen's port, when configured
        self.started = asyncio.Event()  # set once every service is running
        self.received = 0  # complete SMS journaled by this process
        self.forwarded = 0  # SMS acknowledged by the upstream
        self.parked = 0  # SMS taken out of delivery (refused upstream)
        self.started_at = time.time()
        self.publisher: NumbersPublisher | None = None
        self.health: NumberHealth | None = None  # upstream.check_numbers
        self.last_upstream_ok: float | None = None  # wall time, shown
        self._upstream_ok_mono: float | None = None  # the same, monotonic: its age for /readyz
        self._progress = asyncio.Event()

    async def _sink(
        self, info: PortInfo, storage: str, index: int, pdu: str, tpdu_length: int | None
    ) -> bool:
        assert self.journal is not None
        assert info.sim is not None
        now = time.time()
        result = await self.journal.put_part(
            PartIn(
                sim=info.sim,
                port=info.name,
                number=info.number,
                storage=storage,
                index=index,
                pdu=pdu,
                tpdu_length=tpdu_length,
                received_at=now,
            )
        )
        if not result.new:
            return True
        self.metrics.count_part(result.state)
        if result.message_id is not None:
            self.metrics.sms_received.inc()
            self.received += 1
            info.sms_received += 1
            info.last_sms_at = now
        return result.state != "parked"

    def _on_delivered(self, batch: list[PendingMessage], when: float) -> None:
        self.metrics.sms_forwarded.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        self.forwarded += len(batch)
        self._progress.set()
        for msg in batch:
            self.metrics.delivery_seconds.observe(max(0.0, when - msg.received_at))

    def _on_published(self, listed: int) -> None:
        self.metrics.numbers_published.inc()
        self.metrics.numbers_listed.set(listed)

    async def _watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            self.metrics.loop_lag.set(max(0.0, loop.time() - started - LAG_PROBE_INTERVAL))

    async def _maintain(
        self, journal: Journal, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        rounds = 0
        failing = False
        while True:
            try:
                await self._maintain_once(journal, prune=rounds % PRUNE_EVERY == 0)
            except JournalError as exc:
                if not failing:  # one line per state change, not one per round
                    LOGGER.error("journal maintenance paused: %s", exc)
                failing = True
                # A failed commit is waited out; one operation failing on its own leaves the
                # journal healthy, and the round is tried again after the interval (not at once).
                await journal.wait_healthy()
            else:
                if failing:
                    LOGGER.warning("journal maintenance resumed")
                failing = False
                rounds += 1
            await sleep(MAINTENANCE_INTERVAL)

    async def _maintain_once(self, journal: Journal, *, prune: bool) -> None:
        if prune:
            # Retention is of stored records: wall time. Ages below are monotonic.
            now = journal.clock.wall()
            pruned = await journal.prune(now - self.cfg.journal.retention_days * DAY)
            if pruned:
                LOGGER.info("pruned %d delivered messages", pruned)
        released = await journal.release_incomplete(self.cfg.journal.reassembly_timeout)
        if released:
            LOGGER.warning("released %d incomplete multipart SMS", released)
        parked = await journal.park_held(HOLD_TIMEOUT, "number not listed upstream for 24 h")
        if parked:
            LOGGER.warning("parked %d SMS whose number stayed unlisted", parked)
        await journal.recount()

    async def _watch_journal(self, journal: Journal, fleet: Fleet) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await journal.broken.wait()
            fleet.intake.clear()
            LOGGER.critical("journal failed (%s): intake stopped", journal.failed)
            give_up = loop.time() + JOURNAL_GIVE_UP
            while not await journal.probe():
                if loop.time() >= give_up:
                    raise JournalError(
                        f"journal unwritable for {JOURNAL_GIVE_UP:.0f} s: {journal.path}"
                    )
                await asyncio.sleep(JOURNAL_PROBE_INTERVAL)
            LOGGER.warning("journal writable again: intake resumed")
            fleet.intake.set()

    def _on_parked(self, _msg: PendingMessage, _reason: str) -> None:
        self.metrics.sms_parked.inc()
        self.parked += 1

    def _on_v1_push(self) -> None:
        self.forwarded += 1
        self.last_upstream_ok = time.time()
        self._upstream_ok_mono = time.monotonic()
        self._progress.set()

    def _observe_upstream(self, endpoint: str, result: str, seconds: float) -> None:
        self.metrics.observe_upstream(endpoint, result, seconds)
        if result == "ok":
            self.last_upstream_ok = time.time()
            self._upstream_ok_mono = time.monotonic()

    # -- StatusSource (muxd.status) -------------------------------------------------------------

    def port_of(self, number: str) -> str | None:
        """The port whose SIM has ``number`` now (None: on no port)."""
        for info in self.ports():
            if info.number == number:
                return info.name
        return None

    def numbers(self) -> list[dict[str, Any]]:
        if self.v1 is not None:
            return numbers_in_operation(self.ports(), self.v1.book)
        if self.publisher is None:
            return []
        out = []
        for number, entry in sorted(self.publisher.published.items()):
            row: dict[str, Any] = orjson.loads(entry)
            row["id"] = self.publisher.ids.get(number)
            out.append(row)
        return out

    async def outbox(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self.journal.stats() if self.journal else {}
        stats["backlog"] = self.journal.backlog if self.journal else 0
        stats.setdefault("messages_denied", 0)  # the deny-list's count, shown even at 0
        if self.shipper is not None:
            stats["last_error"] = self.shipper.last_error
            stats["auth_failed"] = self.shipper.auth_failed
        return stats

    def totals(self) -> dict[str, Any]:
        extra = {"v1": self.v1.totals()} if self.v1 is not None else {}
        return extra | {
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "received": self.received,
            "forwarded": self.forwarded,
            "parked": self.parked,
            "backlog": self.journal.backlog if self.journal else 0,
            "last_upstream_ok": self.last_upstream_ok,
            "upstream": self.upstream_state(),
        }

    def upstream_loops(self) -> list[RetryLoop]:
        """The retry state of every loop that talks to Onlinesim in this mode."""
        loops: list[RetryLoop] = []
        if self.publisher is not None:
            loops.extend(self.publisher.loops)
        if self.shipper is not None:
            loops.append(self.shipper.loop)
        if self.v1 is not None:
            loops.append(self.v1.pusher.loop)
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
        return self._healthy()

    def ready(self) -> str | None:
        problem = self._healthy()
        if problem is not None:
            return problem
        if not any(p.status is PortStatus.READY for p in self.ports()):
            return "no port ready"
        last = self._upstream_ok_mono
        if self.v1 is not None:
            # v1: Onlinesim polls us (GET_SERVICES every 2 minutes); the age is monotonic.
            age = self.v1.last_request_age()
            if age is None or age > UPSTREAM_STALE:
                return "upstream not reached recently"
            return None
        if last is None or time.monotonic() - last > UPSTREAM_STALE:
            return "upstream not reached recently"
        return None

    async def wait_forwarded(self, count: int) -> None:
        """Return once ``count`` SMS were acknowledged and marked delivered (tests, demo)."""
        while self.forwarded < count:
            self._progress.clear()
            await self._progress.wait()

    def _live_counts(self, info: PortInfo) -> tuple[int, int]:
        session = self.fleet.sessions.get(info.path) if self.fleet else None
        if session is None:
            return info.at_timeouts, info.resyncs
        return info.at_timeouts + session.timeouts, info.resyncs + session.resyncs

    def _healthy(self) -> str | None:
        if self.journal is not None and self.journal.failed is not None:
            return str(self.journal.failed)
        if self.shipper is not None and self.shipper.auth_failed:
            return f"upstream refuses the API key: {self.shipper.last_error}"
        return None

    def ports(self) -> list[PortInfo]:
        return list(self.fleet.ports.values()) if self.fleet else []

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
        self, http: aiohttp.ClientSession, journal: Journal, fleet: Fleet
    ) -> dict[str, Coroutine[Any, Any, None]]:
        """The services that talk to Onlinesim: v2 publisher + shipper, or the v1 service."""
        cfg = self.cfg
        self.metrics.set_box(cfg.cluster.box_name if cfg.cluster is not None else None)
        if cfg.upstream.api == "v1":
            # Onlinesim calls us; the v1 pusher consumes the journal's messages.
            earnings = Earnings(cfg.v1.services, self.port_of)
            self.metrics.registry.register(EarningsCollector(earnings, self.ports))
            # The v1 filters in effect: each service's own, plus the built-in patterns asked for.
            v1 = msgspec.structs.replace(cfg.v1, filter=resolve_filters(cfg.v1))
            self.v1 = V1Service(
                v1,
                cfg.upstream.api_key,
                journal,
                self.ports,
                http,
                observer=MetricsV1Observer(self.metrics, self._on_v1_push, earnings),
                sms_id=cfg.v1.sms_id,
                retry_verdicts=cfg.v1.retry_verdicts,
                status1_blocks=cfg.v1.status1_blocks,
                id_bits=cfg.v1.id_bits,
                retention=cfg.journal.retention_days * DAY,
                push_policy=self._push_policy(),
            )
            return {"v1": self.v1.run()}
        client = V2Client(
            http,
            cfg.upstream.url,
            cfg.upstream.api_key,
            test=cfg.upstream.test,
            observer=self._observe_upstream,
            reading=self.metrics.count_reading,
            check_work_method=cfg.upstream.check_work_method,
            learned=Learned.in_state_dir(cfg.state_dir),
        )
        cluster = None
        if cfg.cluster is not None:  # this box's lease and numbers; list mode: the fleet's list
            from muxd.cluster.v2list import ClusterV2

            cluster = ClusterV2.from_config(cfg, self.ports, journal)
        self.publisher = publisher = NumbersPublisher(
            client,
            self.ports,
            fleet.changed,
            journal,
            interval=cfg.upstream.numbers_interval,
            rent=cfg.upstream.rent,
            incremental=cfg.upstream.numbers_mode == "incremental",
            on_published=self._on_published,
            hold=cfg.modems.unregistered_hold,
            fleet=cluster.fleet if cluster is not None else None,
        )
        self.shipper = shipper = Shipper(
            journal,
            client,
            batch_max=cfg.upstream.batch_max,
            batch_delay=cfg.upstream.batch_delay,
            on_delivered=self._on_delivered,
            on_parked=self._on_parked,
            republish=publisher.request,
            listed=publisher.listed_numbers,
        )
        tasks = {"publisher": publisher.run(), "shipper": shipper.run()}
        if cluster is not None:
            if cluster.fleet is not None:
                cluster.fleet.on_change = publisher.request
            tasks["cluster"] = cluster.run()
        if cfg.upstream.check_numbers:
            self.health = NumberHealth(
                client,
                self.ports,
                publisher.listed_numbers,
                interval=cfg.upstream.check_interval,
            )
            self.metrics.registry.register(HealthCollector(self.ports))
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
            sink=self._sink,
            numbers=numbers,
            sweep_interval=cfg.modems.sweep_interval,
            rescan_interval=cfg.modems.rescan_interval,
            ussd=cfg.numbers.ussd,
        )
        self.metrics.registry.register(FleetCollector(self.ports, self._live_counts))
        self.metrics.registry.register(UpstreamLoopCollector(self.upstream_loops))
        self.metrics.backlog.set_function(lambda: journal.backlog)
        connector = aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS)
        http_cfg = cfg.http
        runner = web.AppRunner(
            make_app(
                self.metrics.registry,
                self,
                token=http_cfg.token,
                hosts=http_cfg.hosts,
                upstream=self.upstream_state,
                degraded=self.upstream_degraded,
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
            async with aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            ) as http:
                self.http_port = await listen(runner, "http.listen", http_cfg.listen)
                if metrics_runner is not None:
                    self.metrics_port = await listen(
                        metrics_runner, "http.metrics_listen", http_cfg.metrics_listen
                    )
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(fleet.run(), name="fleet")
                        for name, coro in self._upstream_tasks(http, journal, fleet).items():
                            tg.create_task(coro, name=name)
                        tg.create_task(self._watch_loop_lag(), name="loop-lag")
                        tg.create_task(self._maintain(journal), name="maintenance")
                        tg.create_task(self._watch_journal(journal, fleet), name="journal-watch")
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
