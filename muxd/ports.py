"""What the modem side and the store side share: what the fleet knows about one port
(:class:`PortInfo`), one PDU a port read (:class:`PartRead`), and the sink it hands it to
(:class:`PartSink`), which answers with a :class:`PartStored`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import msgspec


class PortStatus(enum.Enum):
    OPENING = "opening"
    INITIALIZING = "initializing"
    READY = "ready"
    BACKOFF = "backoff"
    GONE = "gone"


@dataclass
class PortInfo:
    """Owned and mutated by that port's supervisor only; read by metrics, web, publisher."""

    name: str
    path: str
    status: PortStatus = PortStatus.OPENING
    model: str | None = None
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    number: str | None = None
    number_source: str = "unknown"  # file | cnum | ussd | unknown
    operator: int | None = None  # MCC+MNC of the SIM
    network: str | None = None  # AT+COPS? answer: the network the modem is on
    country_id: int | None = None
    registered: bool = False
    signal_dbm: int | None = None
    sms_received: int = 0
    last_sms_at: float | None = None
    since: float | None = None  # when this SIM came up in this port (date_start)
    at_timeouts: int = 0
    resyncs: int = 0
    last_error: str | None = None
    # Monotonic time the modem lost its registration (None: registered, or never was).
    unregistered_at: float | None = None

    @property
    def sim(self) -> str | None:
        """The SIM identity used to key stored parts."""
        return self.iccid or self.imsi

    @property
    def sellable(self) -> bool:
        return (
            self.status is PortStatus.READY
            and self.registered
            and self.number is not None
            and self.country_id is not None
        )

    def sellable_held(self, now: float, hold: float) -> bool:
        """Sellable, counting a registration lost less than ``hold`` seconds ago (monotonic
        ``now``) as still there: a short loss of network does not withdraw the number."""
        if self.sellable:
            return True
        lost = self.unregistered_at
        return (
            hold > 0
            and lost is not None
            and now - lost < hold
            and self.status is PortStatus.READY
            and self.number is not None
            and self.country_id is not None
        )


class PartRead(msgspec.Struct, frozen=True):
    """One PDU as a port read it: from a memory (``storage``, ``index``), or routed to it
    (``storage`` "CMT", ``index`` -1). Built by the port that read it, in the name of the SIM
    identified in the slot when it was read."""

    sim: str
    port: str
    number: str | None  # the SIM's number when it was read (None: not known)
    storage: str
    index: int
    pdu: str  # hex, as the modem sent it
    tpdu_length: int | None
    received_at: float  # wall time the port read it (Unix seconds)


class PartStored(msgspec.Struct, frozen=True):
    """What the sink did with one :class:`PartRead`, once it is durable."""

    new: bool  # False: already held (read again after a crash or a failed delete)
    decodable: bool  # False: kept, but set aside as undecodable: read again before deleting
    completed: bool  # this part completed a message (one SMS received on the port)


# The answer to a part the sink already held: nothing new, nothing to read again.
ALREADY_STORED = PartStored(new=False, decodable=True, completed=False)


class PartSink(Protocol):
    """Where a port hands each PDU it read. Returns only once the part is durable (the port
    deletes it from the modem after that, never before); raises JournalError if it is not."""

    async def __call__(self, part: PartRead, /) -> PartStored: ...
