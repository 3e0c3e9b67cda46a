"""The journal's upkeep while the daemon runs: periodic maintenance, and the watch that stops
the ports' intake while the journal cannot commit.

Maintenance (every MAINTENANCE_INTERVAL): recount the backlog, release multipart sets that
waited too long for their missing parts, park SMS whose number stayed off the upstream's list,
and (every PRUNE_EVERY rounds) prune delivered messages past their retention.

The watch: once a commit fails, the ports' intake gate is cleared (nothing more is read, so
nothing is deleted from a modem), the journal is probed with a real write every
JOURNAL_PROBE_INTERVAL, and the gate opens again once a probe succeeds. After JOURNAL_GIVE_UP
the daemon gives up (JournalError: it exits non-zero, the service manager restarts it and the
alarm is loud).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from muxd.errors import JournalError
from muxd.store.journal import Journal

__all__ = [
    "DAY",
    "HOLD_TIMEOUT",
    "JOURNAL_GIVE_UP",
    "JOURNAL_PROBE_INTERVAL",
    "MAINTENANCE_INTERVAL",
    "PRUNE_EVERY",
    "JournalMaintenance",
    "watch_journal",
]

LOGGER = logging.getLogger(__name__)

DAY = 86400.0
# Journal housekeeping: recount the backlog every minute, prune delivered messages hourly.
MAINTENANCE_INTERVAL = 60.0
PRUNE_EVERY = 60  # maintenance rounds
# An SMS held because its number is off the upstream's list (port down, SIM out) waits this
# long for the number to come back before it is parked for an operator.
HOLD_TIMEOUT = DAY
# After a failed journal commit: probe with a real write every 5 s; give up (exit non-zero, so
# the service manager restarts us and the alarm is loud) after 10 minutes.
JOURNAL_PROBE_INTERVAL = 5.0
JOURNAL_GIVE_UP = 600.0


class JournalMaintenance:
    """The periodic rounds over one journal (``run`` until cancelled)."""

    def __init__(
        self,
        journal: Journal,
        *,
        retention_days: float,
        reassembly_timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.journal = journal
        self.retention = retention_days * DAY
        self.reassembly_timeout = reassembly_timeout
        self._sleep = sleep

    async def run(self) -> None:
        journal = self.journal
        rounds = 0
        failing = False
        while True:
            try:
                await self.round(prune=rounds % PRUNE_EVERY == 0)
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
            await self._sleep(MAINTENANCE_INTERVAL)

    async def round(self, *, prune: bool) -> None:
        journal = self.journal
        if prune:
            # Retention is of stored records: wall time. Ages below are monotonic.
            pruned = await journal.prune(journal.clock.wall() - self.retention)
            if pruned:
                LOGGER.info("pruned %d delivered messages", pruned)
        released = await journal.release_incomplete(self.reassembly_timeout)
        if released:
            LOGGER.warning("released %d incomplete multipart SMS", released)
        parked = await journal.park_held(HOLD_TIMEOUT, "number not listed upstream for 24 h")
        if parked:
            LOGGER.warning("parked %d SMS whose number stayed unlisted", parked)
        await journal.recount()


async def watch_journal(journal: Journal, intake: asyncio.Event) -> None:
    """Close ``intake`` (the ports' gate) while the journal cannot commit; raise JournalError
    once it stayed unwritable for JOURNAL_GIVE_UP."""
    loop = asyncio.get_running_loop()
    while True:
        await journal.broken.wait()
        intake.clear()
        LOGGER.critical("journal failed (%s): intake stopped", journal.failed)
        give_up = loop.time() + JOURNAL_GIVE_UP
        while not await journal.probe():
            if loop.time() >= give_up:
                raise JournalError(
                    f"journal unwritable for {JOURNAL_GIVE_UP:.0f} s: {journal.path}"
                )
            await asyncio.sleep(JOURNAL_PROBE_INTERVAL)
        LOGGER.warning("journal writable again: intake resumed")
        intake.set()
