"""API v1 (Onlinesim calls muxd): the partner server, the PUSH_SMS pusher, optional local
expiry and pruning, as one service for the daemon's TaskGroup.

``run()`` loads the open operations and sales from the journal, serves ``[v1] listen``,
pushes SMS, and until cancelled: frees reservations nobody finished (15 minutes plus
``reservation_grace``) when ``reservation_expiry`` is on, and prunes closed operations,
settled pushes and sales older than the journal's retention; then it stops serving and returns
the sockets. Every decision is journaled before it is answered, so a restart loses nothing.

Clocks: wall time (``clock``) only for what is stored and sent; every deadline and age in the
process (expiry, the last request's age, how long an SMS without operation waits) runs on
``monotonic``, so a wall-clock step neither expires a reservation early nor keeps it late. At
start a stored reservation gets what is left of its hold by the wall clock, never more than a
whole hold.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web

from muxd.config import V1Config, parse_listen
from muxd.errors import ConfigError, JournalError, listen_error
from muxd.ports import PortInfo
from muxd.store import Journal
from muxd.upstream.v1.counts import Book
from muxd.upstream.v1.edge import tls_context
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.operations import attach_matching, closed_elsewhere, expire, load_state, prune
from muxd.upstream.v1.opmatch import Matching
from muxd.upstream.v1.push_policy import PushPolicy
from muxd.upstream.v1.pusher import Pusher
from muxd.upstream.v1.server import RESERVATION, V1Handlers, make_app
from muxd.web_guard import is_loopback

LOGGER = logging.getLogger(__name__)

# How often reservations are checked for expiry: a lapsed one is released at most this late,
# which is nothing next to the 15-minute hold.
EXPIRY_CHECK: Final = 5.0
# activationId width: 63 random bits by default (SQLite's INTEGER is signed 64-bit); 53 keeps
# ids exact for a JSON reader that parses numbers as doubles; fewer makes collisions likely.
MIN_ID_BITS: Final = 32
MAX_ID_BITS: Final = 63
# How long runner.cleanup() lets in-flight requests finish (each is answered in milliseconds).
SHUTDOWN_TIMEOUT: Final = 2.0
# How long aiohttp keeps reading (and discarding) the rest of a body the server refused (408,
# 413) before closing the connection: none. The body deadline already gave the client its
# time, and that read is not woken when the client goes away, so it would outlive the
# server's shutdown by up to aiohttp's default of 10 s.
LINGERING_TIME: Final = 0.0
# How often closed operations, settled pushes and sales past the retention are deleted.
PRUNE_INTERVAL: Final = 3600.0
# After a failed prune, try again this much later.
PRUNE_RETRY: Final = 60.0
# How often the journal's change counter is read for operations closed by another process
# (``muxd v1 operations close``): a local close reaches the running service this late at most.
RELOAD_CHECK: Final = 5.0

__all__ = ["EXPIRY_CHECK", "RESERVATION", "V1Observer", "V1Service"]


class V1Service:
    def __init__(
        self,
        cfg: V1Config,
        api_key: str,
        journal: Journal,
        ports: Callable[[], Iterable[PortInfo]],
        http: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        retention: float | None = None,
        observer: V1Observer | None = None,
        sms_id: Literal["sms", "activation"] = "sms",
        retry_verdicts: bool = False,
        status1_blocks: bool = False,
        id_bits: int = 63,
        push_policy: PushPolicy | None = None,
    ) -> None:
        if not MIN_ID_BITS <= id_bits <= MAX_ID_BITS:
            raise ValueError(f"id_bits must be within [{MIN_ID_BITS}, {MAX_ID_BITS}]")
        self.cfg = cfg
        self._journal = journal
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._retention = retention  # seconds; None: never prune
        self._observer = observer or V1Observer()
        self.matching = Matching(clock, monotonic)
        attach_matching(journal, self.matching)
        self.book = Book()
        self.names = Names(cfg.countries, cfg.operators)
        self.handlers = V1Handlers(
            cfg,
            api_key,
            journal,
            ports,
            self.book,
            self.names,
            clock=clock,
            observer=self._observer,
            id_bits=id_bits,
            status1_blocks=status1_blocks,
            monotonic=monotonic,
            on_change=self.operations_changed,
        )
        self.pusher = Pusher(
            journal,
            http,
            api_key=api_key,
            url=cfg.push_sms_url,
            rent_url=cfg.push_sms_rent_url,
            filters=cfg.filter,
            gzip_body=cfg.gzip_push,
            clock=clock,
            sleep=sleep,
            observer=self._observer,
            sms_id=sms_id,
            retry_verdicts=retry_verdicts,
            policy=push_policy,
            timer=monotonic,
        )
        self.port: int = 0  # bound port, once started
        self.started = asyncio.Event()
        self._data_version: int | None = None  # the journal's change counter, last read

    async def run(self) -> None:
        state = await load_state(self._journal)
        self.book.load(state)
        if self.cfg.reservation_expiry:
            hold = RESERVATION + self.cfg.reservation_grace
            wall, mono = self._clock(), self._monotonic()
            for op in state.open:
                if not op.rent:
                    left = min(max(op.created_at + hold - wall, 0.0), hold)
                    self.book.deadlines[op.activation_id] = mono + left
        self._observer.operations_open(len(self.book.open_by_id))
        LOGGER.info(
            "v1: %d open operations, %d sold (number, service) pairs",
            len(self.book.open_by_id),
            sum(len(s) for s in self.book.sold.values()),
        )
        runner = web.AppRunner(
            make_app(self.handlers),
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            lingering_time=LINGERING_TIME,
        )
        await runner.setup()
        try:
            host, port = parse_listen(self.cfg.listen)
            tls = self._tls()
            try:
                await web.TCPSite(runner, host, port, ssl_context=tls).start()
            except OSError as exc:
                raise listen_error("v1.listen", self.cfg.listen, exc) from None
            self.port = int(runner.addresses[0][1])
            scheme = "http" if tls is None else "https"
            LOGGER.info("v1 partner server on %s://%s:%d/", scheme, host, self.port)
            if tls is None and not is_loopback(host):
                LOGGER.warning(
                    "v1 partner server: plain HTTP on %s, beyond loopback: Onlinesim must reach"
                    " it through a TLS reverse proxy (the API key and SMS travel in the body),"
                    " or set v1.tls_cert and v1.tls_key",
                    self.cfg.listen,
                )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pusher.run(), name="v1-pusher")
                tg.create_task(self._expire_loop(), name="v1-expiry")
                tg.create_task(self._reload_loop(), name="v1-reload")
                if self._retention is not None:
                    tg.create_task(self._prune_loop(self._retention), name="v1-prune")
                self.started.set()
        finally:
            await runner.cleanup()

    def _tls(self) -> ssl.SSLContext | None:
        """The listener's TLS context (checked at config load; read again here, so a file
        changed since then is one line naming its key, not a traceback)."""
        if not self.cfg.tls_cert:
            return None
        try:
            return tls_context(self.cfg.tls_cert, self.cfg.tls_key)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def operations_changed(self, number: str | None = None) -> None:
        """An operation opened, finished or expired on ``number`` (None: anywhere): SMS
        without one there are examined again."""
        self.matching.changed(number)
        self._journal.new_messages.set()  # wakes the pusher

    async def expire_due(self) -> list[int]:
        """Free every reservation past its local deadline (monotonic); return their ids."""
        due = self.book.due(self._monotonic())
        if not due:
            return []
        abandoned = [aid for aid in due if aid in self.book.abandoned]
        expired = [aid for aid in due if aid not in self.book.abandoned]
        now = self._clock()
        done = await expire(self._journal, expired, now)
        done += await expire(self._journal, abandoned, now, closed=True)
        for aid in due:
            op = self.book.closed(aid)
            if op is not None:
                self.matching.changed(op.number)
        for aid in done:
            if aid not in abandoned:
                LOGGER.warning(
                    "operation %d: no FINISH_ACTIVATION in time; its number is for sale again"
                    " (SMS still pushed until it is finished)",
                    aid,
                )
        self._observer.operations_open(len(self.book.open_by_id))
        self._journal.new_messages.set()  # wakes the pusher
        return done

    async def reload_closed(self) -> list[int]:
        """Take in operations another process closed in the journal (``muxd v1 operations
        close``): when the journal's change counter moved (it counts other connections'
        commits only), every operation the book holds open but the journal does not is closed
        here too. Only ids in the book before the read are examined, so an operation opened
        meanwhile is never mistaken for a closed one."""
        candidates = list(self.book.open_by_id)
        version, closed = await closed_elsewhere(self._journal, candidates, self._data_version)
        self._data_version = version
        # A local close repairs a lost FINISH: what Onlinesim credited for it is unknown, so it
        # is not counted in the earnings metrics (``muxd v1 sales`` reads the journal).
        for op, _finish_sum in closed:
            if self.book.closed(op.activation_id) is None:
                continue  # closed here meanwhile (a FINISH)
            if op.status == 3 and not op.rent:
                self.book.mark_sold(op.number, op.service)
            self.operations_changed(op.number)
            LOGGER.warning(
                "operation %d closed outside the daemon (status %s); its number is free",
                op.activation_id,
                op.status,
            )
        if closed:
            self._observer.operations_open(len(self.book.open_by_id))
        return [op.activation_id for op, _s in closed]

    async def _reload_loop(self) -> None:
        await self._every(RELOAD_CHECK, self.reload_closed, "v1 reload", "readable")

    async def _expire_loop(self) -> None:
        await self._every(EXPIRY_CHECK, self.expire_due, "v1 expiry", "writable")

    async def _every(
        self,
        interval: float,
        step: Callable[[], Awaitable[object]],
        what: str,
        healthy: str,
    ) -> None:
        """Run ``step`` every ``interval`` s; a journal failure is logged once, not per run."""
        failing = False
        while True:
            try:
                await step()
                if failing:
                    LOGGER.warning("%s: journal %s again", what, healthy)
                failing = False
            except JournalError as exc:
                if not failing:  # one line per state change, not one per check
                    LOGGER.error("%s paused: %s", what, exc)
                failing = True
            await self._sleep(interval)

    async def prune_once(self, retention: float) -> None:
        """Delete what is older than ``retention`` seconds (by the wall clock: stored times)."""
        pruned = await prune(self._journal, self._clock() - retention)
        for number, service in pruned.sold:
            self.book.unsold(number, service)
        if pruned.operations or pruned.pushes or pruned.sold:
            LOGGER.info(
                "v1: pruned %d operations, %d pushes, %d sales",
                pruned.operations,
                pruned.pushes,
                len(pruned.sold),
            )

    async def _prune_loop(self, retention: float) -> None:
        failing = False
        while True:
            try:
                await self.prune_once(retention)
                delay, failing = PRUNE_INTERVAL, False
            except JournalError as exc:
                if not failing:  # one line per state change, not one per attempt
                    LOGGER.error("v1 prune paused: %s", exc)
                delay, failing = PRUNE_RETRY, True
            await self._sleep(delay)

    def last_request_age(self) -> float | None:
        """Seconds since Onlinesim's last authenticated call, on the monotonic clock."""
        last = self.handlers.last_request_mono
        return None if last is None else max(0.0, self._monotonic() - last)

    @property
    def last_request_at(self) -> float | None:
        """When Onlinesim last made an authenticated call (it polls GET_SERVICES every 2
        minutes): the v1 counterpart of "upstream reached recently"."""
        return self.handlers.last_request_at

    def totals(self) -> dict[str, Any]:
        """For the status page."""
        return {
            "last_request_at": self.last_request_at,
            "operations_open": len(self.book.open_by_id),
            "sms_waiting_for_operation": len(self.matching.waiting),
            "pushes_queued": self.pusher.queued,
            "pushed": self.pusher.delivered,
            "last_push_error": self.pusher.last_error,
        }
