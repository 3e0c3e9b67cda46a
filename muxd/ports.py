"""What the fleet knows about one port, and the sink the receive path stores into."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


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
    # What checkNumber last said about this port's number (v2, upstream.check_numbers).
    health: dict[str, Any] | None = None

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

    @property
    def current_health(self) -> dict[str, Any] | None:
        """:attr:`health` if it is about the number in the port now (a swapped SIM's is not)."""
        health = self.health
        if health is None or self.number is None or health.get("number") != self.number:
            return None
        return health

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


# sink(port, storage, index, pdu_hex, tpdu_length): returns once the part is durable. True: the
# part decodes (or was already known); False: stored, but parked as undecodable (the port then
# reads it again before deleting it).
PartSink = Callable[[PortInfo, str, int, str, int | None], Awaitable[bool]]
