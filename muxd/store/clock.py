"""The store's clocks, and the date an SMS is reported with.

Two clocks, never mixed: wall time (Unix seconds) for what is stored and sent (when a part was
read, when a message was delivered, the ``date`` of an SMS), and monotonic time for every
in-process age and deadline (the reassembly timeout, how long an SMS stays held). A wall-clock
step (NTP on a box without an RTC, an operator's ``date -s``) then moves no deadline.

Monotonic readings are stored beside the rows they time (``seen_mono``), tagged with the clock's
``epoch`` (the kernel's boot id: CLOCK_MONOTONIC counts from boot, so readings of one boot
compare across processes, a restarted daemon and ``muxd outbox`` included). When the journal is
opened under another epoch (a reboot), every running age restarts at the opening: a deadline may
come late after a reboot, never early.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "MAX_STAMP_AGE",
    "MAX_STAMP_LEAD",
    "DateSource",
    "StoreClock",
    "plausible_stamp",
    "sms_date",
]

#: How far an SMSC stamp may lie in the future of the time muxd read the SMS. The SMSC stamps
#: before it delivers, so any lead is a clock difference; 5 minutes forgives a slow NTP sync.
MAX_STAMP_LEAD = 300.0
#: How old a stamp may be. An SMS may wait on a SIM for months (its port out of service, the
#: SIM on a shelf), and reporting such an SMS as new would let it pass for a fresh code; a stamp
#: older than a year is a wrong SMSC clock (a reset to 2000, a year read as 2099).
MAX_STAMP_AGE = 366 * 86400.0
#: Offsets in use on Earth: UTC-12:00 to UTC+14:00. A TP-SCTS can say -19:45..+19:45.
MIN_UTC_OFFSET = datetime.timedelta(hours=-12)
MAX_UTC_OFFSET = datetime.timedelta(hours=14)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

#: Where a message's ``sms_time`` came from: its SMSC stamp, or the time muxd read it.
DateSource = Literal["stamp", "read"]


def plausible_stamp(stamp: datetime.datetime | None, read_at: float) -> bool:
    """Is this SMSC stamp a believable date for an SMS muxd read at ``read_at`` (Unix s)?

    Not when unknown, not more than :data:`MAX_STAMP_LEAD` after the read, not more than
    :data:`MAX_STAMP_AGE` before it, not in a zone no place uses.
    """
    if stamp is None:
        return False
    offset = stamp.utcoffset()
    if offset is None or not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
        return False
    at = stamp.timestamp()
    return read_at - MAX_STAMP_AGE <= at <= read_at + MAX_STAMP_LEAD


def sms_date(stamp: datetime.datetime | None, read_at: float) -> tuple[int, DateSource]:
    """The ``date`` to report (Unix seconds): the SMS's stamp when plausible, else the read."""
    if plausible_stamp(stamp, read_at):
        assert stamp is not None
        return int(stamp.timestamp()), "stamp"
    return int(read_at), "read"


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class StoreClock:
    """The clocks the journal reads; tests give it their own."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    #: Names the origin of ``monotonic``; None (unknown): every opening restarts the ages.
    epoch: str | None = field(default_factory=_boot_id)
