"""What a box in a cluster runs beside its own receive path (``[cluster]`` with API v1).

- At start: the schema is migrated (several boxes starting at once is safe), retried with a
  floor while PostgreSQL is not there; then a few pooled connections are opened ahead, so a
  burst soon after the start need not open them.
- The lease (:class:`LeaseKeeper`): renewed three times per lease; a box that stops renewing
  leaves the fleet's counts within the lease.
- Its sellable numbers (the ports' state, named as GET_SERVICES names them) are published on
  each change of the fleet, at most every :data:`PUBLISH_FLOOR`, and at least every lease/3.
- The operations whose SMS it pushes (opened on any box for one of its SIMs) are learned
  within a second through LISTEN/NOTIFY (a notification names the operation; the connection
  is opened again with a floor when it breaks), and by a periodic reconcile as the fallback
  (notifications are not kept for a box that is not listening). Each is copied into the
  local journal (:mod:`muxd.cluster.mirror`), where the v1 matching and pusher take it up as
  a local one. Its FINISH, answered by any box, comes the same way: this box, holding the
  SIM, credits the sale to its port's earnings (``on_finished``), once.
- Reservations whose GET_NUMBER answer never reached Onlinesim are released.
- A clean stop ends the lease at once (its numbers leave the counts now).

PostgreSQL down: the box keeps receiving and journaling SMS (nothing here is on that path),
logs the change of state once, retries every loop with a floor (never faster, however fast
each attempt fails) and catches up when it answers again: the lease, the full number list,
the operations it missed (the reconcile), the releases it owes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry

from muxd.cluster.gate import Gate
from muxd.cluster.lease import LeaseKeeper
from muxd.cluster.metrics import ClusterMetrics
from muxd.cluster.mirror import mirror, open_here, spread_sms_ids, unfinished_here
from muxd.cluster.records import ClusterError, ClusterUnavailable, NumberEntry
from muxd.cluster.records import Operation as ClusterOperation
from muxd.cluster.store import ClusterStore
from muxd.cluster.v1 import ClusterBackend
from muxd.config import ClusterConfig, V1Config
from muxd.errors import JournalError
from muxd.log import mask_number
from muxd.ports import PortInfo
from muxd.store import Journal
from muxd.upstream.v1.names import Names
from muxd.upstream.v1.operations import Operation

LOGGER = logging.getLogger(__name__)

# Between two attempts at the schema while PostgreSQL is not there (an hour: 720 attempts).
MIGRATE_RETRY: Final = 5.0
# The least time between two publications of the number list (a flapping port).
PUBLISH_FLOOR: Final = 1.0
# Between two attempts to LISTEN again after the connection broke or could not be opened.
LISTEN_RETRY: Final = 2.0
# The reconcile: open operations of this box's SIMs read from the cluster (what a missed
# notification costs at most), and what the journal holds open checked against them.
RECONCILE_INTERVAL: Final = 10.0
# An expired operation's late FINISH (its status, a sale) is looked for by the reconcile this
# long after the expiry (a wall-clock window: a clock step only moves which are looked at).
LATE_FINISH_WINDOW: Final = 86400.0
# After a failed read of notified operations or a failed journal write, try again this late.
LEARN_RETRY: Final = 1.0
# Releasing reservations whose answer never reached Onlinesim: retried this often while
# PostgreSQL does not answer; each is looked at once more after ABANDON_RECHECK (a statement
# cut on this side may still have committed on the server).
ABANDON_RETRY: Final = 2.0
ABANDON_RECHECK: Final = 10.0
# How often reservations past their hold are closed (when v1.reservation_expiry is on).
EXPIRY_CHECK: Final = 5.0
# A clean stop waits this long for PostgreSQL to take the end of the lease.
LEAVE_TIMEOUT: Final = 2.0


def number_entries(ports: Iterable[PortInfo], names: Names) -> list[NumberEntry]:
    """The numbers this box offers, by the rule the local GET_SERVICES counts them with: a
    sellable port's number, one entry per number."""
    seen: dict[str, NumberEntry] = {}
    for info in ports:
        if not info.sellable or info.number is None or info.number in seen:
            continue
        seen[info.number] = NumberEntry(
            number=info.number,
            port=info.name,
            iccid=info.iccid,
            country=names.country(info.number, info.country_id),
            country_id=info.country_id,
            operator=names.operator(info.operator),
            operator_code=info.operator,
            date_start=int(info.since) if info.since else None,
        )
    return list(seen.values())


class ClusterBox:
    def __init__(
        self,
        cluster: ClusterConfig,
        v1: V1Config,
        journal: Journal,
        ports: Callable[[], Iterable[PortInfo]],
        changed: asyncio.Event,
        names: Names,
        registry: CollectorRegistry,
        *,
        on_operations: Callable[[str], None] = lambda _number: None,
        on_finished: Callable[[Operation, int, float | None], None] = lambda _o, _s, _f: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = cluster.box_name
        self.store = ClusterStore(cluster.database, self.name, lease=cluster.lease)
        self.metrics = ClusterMetrics(registry, monotonic=monotonic)
        self.gate = Gate(self.metrics)
        self.lease = LeaseKeeper(self.store, sleep=sleep)
        self.backend = ClusterBackend(self.store, v1, self.gate, self.metrics, abandon=self.abandon)
        self._v1 = v1
        self._journal = journal
        self._ports = ports
        self._changed = changed
        self._names = names
        self._on_operations = on_operations  # an operation on this number changed locally
        self._on_finished = on_finished  # (operation, status, FINISH sum): first time here
        self._sleep = sleep
        self._monotonic = monotonic
        self.migrated = asyncio.Event()
        self.published: int | None = None  # numbers in the last publication
        self._notified: set[int] = set()  # ids announced, not yet copied
        self._notify_wake = asyncio.Event()
        self._reconcile_wake = asyncio.Event()
        self._abandons: dict[uuid.UUID, tuple[float, int]] = {}  # request -> (due, checks left)
        self._abandon_wake = asyncio.Event()

    # -- entry points -----------------------------------------------------------------------

    def abandon(self, request: uuid.UUID) -> None:
        """Release the reservation of ``request`` (if it made one): its answer never left."""
        self._abandons[request] = (self._monotonic(), 2)
        self._abandon_wake.set()

    async def run(self) -> None:
        await spread_sms_ids(self._journal, self.name)
        stopping = True  # (a cancel, the clean stop, ends the run as a BaseException)
        async with self.store:
            try:
                await self._migrate()
                self.backend.enabled = True
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._warm(), name="cluster-warm")
                    tg.create_task(self._lease_loop(), name="cluster-lease")
                    tg.create_task(self._publish_loop(), name="cluster-publish")
                    tg.create_task(self._listen_loop(), name="cluster-listen")
                    tg.create_task(self._learn_loop(), name="cluster-learn")
                    tg.create_task(self._reconcile_loop(), name="cluster-reconcile")
                    tg.create_task(self._abandon_loop(), name="cluster-abandon")
                    if self._v1.reservation_expiry:
                        tg.create_task(self._expiry_loop(), name="cluster-expiry")
            except Exception:
                stopping = False  # an error: started again (muxd.cluster.supervise), quietly
                raise
            finally:
                self.backend.enabled = False
                await self.backend.close()
                if self.migrated.is_set():
                    await self._leave(log=stopping)

    # -- start and stop ---------------------------------------------------------------------

    async def _migrate(self) -> None:
        while True:
            try:
                await self.gate.run("migrate", self.store.migrate)
            except ClusterUnavailable:
                await self._sleep(MIGRATE_RETRY)
                continue
            except ClusterError:
                raise  # a schema newer than this muxd: the operator must act
            if not self.migrated.is_set():  # (not again on each start after an error)
                LOGGER.info("cluster: box %s in the cluster's database", self.name)
            self.migrated.set()
            return

    async def _leave(self, *, log: bool = True) -> None:
        level = logging.INFO if log else logging.DEBUG
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self.gate.run("leave", self.store.leave)
            LOGGER.log(level, "cluster: box %s left (its numbers no longer count)", self.name)
        except (ClusterUnavailable, TimeoutError):
            LOGGER.log(
                logging.WARNING if log else level,
                "cluster: box %s could not leave; its lease runs out",
                self.name,
            )

    async def _warm(self) -> None:
        """Open pooled connections ahead, now that PostgreSQL answered (once: when it fails,
        connections open on demand, as they would anyway)."""
        with contextlib.suppress(ClusterUnavailable):
            await self.gate.run("warm", self.store.warm)

    # -- loops ------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            if await self.lease.renew():
                self.metrics.call("heartbeat", "ok")
                self.metrics.renewed()
                self.gate.answered()
            else:
                self.metrics.call("heartbeat", "unavailable")
                self.gate.failed(f"lease of box {self.name} not renewed")
            await self._sleep(self.lease.interval)

    async def publish(self) -> bool:
        """Publish this box's numbers now; False when PostgreSQL did not take them."""
        entries = number_entries(self._ports(), self._names)
        try:
            count = await self.gate.run("publish", lambda: self.store.publish_numbers(entries))
        except ClusterUnavailable:
            return False
        if count != self.published:
            LOGGER.info("cluster: box %s offers %d numbers", self.name, count)
        self.published = count
        self.metrics.numbers.set(count)
        return True

    async def _publish_loop(self) -> None:
        interval = self.lease.interval
        while True:
            self._changed.clear()
            await self.publish()
            await self._sleep(PUBLISH_FLOOR)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, interval - PUBLISH_FLOOR)):
                    await self._changed.wait()

    def _on_notify(self, activation_id: int) -> None:
        self._notified.add(activation_id)
        self._notify_wake.set()

    async def _listen_loop(self) -> None:
        lost_before = False
        while True:
            try:
                listener = await self.gate.run(
                    "listen", lambda: self.store.listen(self.name, self._on_notify)
                )
            except ClusterUnavailable:
                await self._sleep(LISTEN_RETRY)
                continue
            if lost_before:
                LOGGER.warning("cluster: listening for new operations again")
            self._reconcile_wake.set()  # what was announced while nobody listened
            try:
                await listener.lost.wait()
            finally:
                await listener.close()
            LOGGER.error("cluster: the connection listening for new operations broke")
            lost_before = True
            await self._sleep(LISTEN_RETRY)

    async def _learn_loop(self) -> None:
        while True:
            await self._notify_wake.wait()
            self._notify_wake.clear()
            # Taken out now: an id announced again while these are read (opened, then
            # finished) is read once more, in the next round.
            ids = sorted(self._notified)
            self._notified.clear()
            if not ids:
                continue
            try:
                ops = await self.gate.run(
                    "operations", functools.partial(self.store.operations, ids)
                )
                await self._take(ops, "notify")
            except (ClusterUnavailable, JournalError) as exc:
                LOGGER.debug("cluster: operations %s not taken in yet: %s", ids, exc)
                self._notified.update(ids)  # the reconcile covers them too
                self._notify_wake.set()
                await self._sleep(LEARN_RETRY)

    async def _take(self, ops: list[ClusterOperation], via: str) -> None:
        copied = await mirror(self._journal, ops)  # one journal transaction
        if copied.opened:
            self.metrics.learned.labels(via).inc(len(copied.opened))
        for credit in copied.credited:
            try:
                self._on_finished(credit.op, credit.status, credit.finish_sum)
            except Exception:  # a callback's bug must not lose the other credits of the batch
                LOGGER.exception("cluster: crediting activation %d failed", credit.op.activation_id)
        for number in dict.fromkeys(copied.numbers):
            try:
                self._on_operations(number)
            except Exception:
                LOGGER.exception("cluster: waking the pusher for %s failed", mask_number(number))

    async def reconcile(self) -> None:
        """Take in every open operation of this box's SIMs, close what the journal holds
        open but the cluster closed, and take in late FINISHes of what expired here within
        :data:`LATE_FINISH_WINDOW`. Raises ClusterUnavailable or JournalError."""
        shared = await self.gate.run("operations", lambda: self.store.open_operations(self.name))
        open_ids = {op.activation_id for op in shared}
        missed = [aid for aid in await open_here(self._journal) if aid not in open_ids]
        missed += await unfinished_here(self._journal, time.time() - LATE_FINISH_WINDOW)
        closed = []
        if missed:
            closed = await self.gate.run(
                "operations", functools.partial(self.store.operations, missed)
            )
        await self._take([*shared, *closed], "reconcile")

    async def _reconcile_loop(self) -> None:
        failing = False
        while True:
            try:
                await self.reconcile()
                if failing:
                    LOGGER.warning("cluster: operations reconciled again")
                failing = False
            except (ClusterUnavailable, JournalError) as exc:
                if not failing and isinstance(exc, JournalError):
                    LOGGER.error("cluster: reconcile paused: %s", exc)
                failing = True
            self._reconcile_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_INTERVAL):
                    await self._reconcile_wake.wait()
            await self._sleep(LEARN_RETRY)  # the floor, however often it is woken

    async def _abandon_loop(self) -> None:
        while True:
            now = self._monotonic()
            for request, (due, left) in sorted(self._abandons.items(), key=lambda kv: kv[1]):
                if due > now:
                    continue
                try:
                    released = await self.gate.run(
                        "abandon", functools.partial(self.store.abandon, request)
                    )
                except ClusterUnavailable:
                    break  # all wait for the next round
                if released is not None:
                    self.metrics.reservations.labels("abandoned").inc()
                    LOGGER.warning(
                        "operation %d: its GET_NUMBER answer never reached Onlinesim;"
                        " its number is released",
                        released,
                    )
                if left > 1:
                    self._abandons[request] = (now + ABANDON_RECHECK, left - 1)
                else:
                    del self._abandons[request]
            self._abandon_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ABANDON_RETRY):
                    await self._abandon_wake.wait()

    async def _expiry_loop(self) -> None:
        while True:
            with contextlib.suppress(ClusterUnavailable):
                expired = await self.gate.run("expire", self.store.expire_due)
                for aid in expired:
                    LOGGER.warning(
                        "operation %d: no FINISH_ACTIVATION in time; its number is for sale again",
                        aid,
                    )
            await self._sleep(EXPIRY_CHECK)
