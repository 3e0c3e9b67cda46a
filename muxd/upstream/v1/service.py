"""API v1 (Onlinesim calls muxd): the partner server, the PUSH_SMS pusher and reservation
expiry, as one service for the daemon's TaskGroup (reseller-api.md §6).

``run()`` loads the open operations and sales from the journal, serves ``[v1] listen``,
pushes SMS and expires reservations nobody finished (15 minutes, §6.2, plus
``reservation_grace``) until cancelled; then it stops serving and returns the sockets. Every
decision is journaled before it is answered, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web

from muxd.config import V1Config, parse_listen
from muxd.errors import JournalError
from muxd.modem.state import PortInfo
from muxd.store import Journal
from muxd.store.operations import expire, load_state
from muxd.upstream.v1.counts import Book
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.push_policy import PushPolicy
from muxd.upstream.v1.pusher import Pusher
from muxd.upstream.v1.server import RESERVATION, V1Handlers, make_app

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
        self._observer = observer or V1Observer()
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
        )
        self.port: int = 0  # bound port, once started
        self.started = asyncio.Event()

    async def run(self) -> None:
        state = await load_state(self._journal)
        self.book.load(state)
        self._observer.operations_open(len(self.book.open_by_id))
        LOGGER.info(
            "v1: %d open operations, %d sold (number, service) pairs",
            len(self.book.open_by_id),
            sum(len(s) for s in self.book.sold.values()),
        )
        runner = web.AppRunner(
            make_app(self.handlers), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            host, port = parse_listen(self.cfg.listen)
            await web.TCPSite(runner, host, port).start()
            self.port = int(runner.addresses[0][1])
            LOGGER.info("v1 partner server on http://%s:%d/", host, self.port)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.pusher.run(), name="v1-pusher")
                tg.create_task(self._expire_loop(), name="v1-expiry")
                self.started.set()
        finally:
            await runner.cleanup()

    async def expire_due(self) -> list[int]:
        """Release every reservation past its end; return their ids."""
        due = self.book.due(self._clock())
        if not due:
            return []
        done = await expire(self._journal, due, self._clock())
        for aid in due:
            self.book.closed(aid)
        for aid in done:
            LOGGER.warning("operation %d expired without FINISH_ACTIVATION", aid)
        self._observer.operations_open(len(self.book.open_by_id))
        return done

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire_due()
            except JournalError as exc:
                LOGGER.error("v1 expiry: %s", exc)
            await self._sleep(EXPIRY_CHECK)

    @property
    def last_request_at(self) -> float | None:
        """When Onlinesim last made an authenticated call (it polls GET_SERVICES every 2
        minutes, §4): the v1 counterpart of "upstream reached recently"."""
        return self.handlers.last_request_at

    def totals(self) -> dict[str, Any]:
        """For the status page."""
        return {
            "last_request_at": self.last_request_at,
            "operations_open": len(self.book.open_by_id),
            "pushes_queued": self.pusher.queued,
            "pushed": self.pusher.delivered,
            "last_push_error": self.pusher.last_error,
        }
