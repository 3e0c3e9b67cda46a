"""What the HTTP endpoint shows: one interface the daemon implements, read by muxd.web."""

from __future__ import annotations

from typing import Any, Protocol

from muxd.ports import PortInfo


def port_status(info: PortInfo, health: dict[str, Any] | None = None) -> dict[str, Any]:
    """One port as JSON (no IMSI: the SIM is identified by its ICCID); ``health``: what
    checkNumber last said about the number in the port now."""
    return {
        "port": info.name,
        "path": info.path,
        "state": info.status.value,
        "model": info.model,
        "imei": info.imei,
        "iccid": info.iccid,
        "number": info.number,
        "number_source": info.number_source,
        "operator": info.operator,
        "network": info.network,
        "country_id": info.country_id,
        "registered": info.registered,
        "signal_dbm": info.signal_dbm,
        "sellable": info.sellable,
        "sms_received": info.sms_received,
        "last_sms_at": info.last_sms_at,
        "since": info.since,
        "at_timeouts": info.at_timeouts,
        "resyncs": info.resyncs,
        "last_error": info.last_error,
        "health": health,  # v2 checkNumber (upstream.check_numbers), or None
    }


class StatusSource(Protocol):
    def ports(self) -> list[PortInfo]:
        """Every port the fleet knows."""
        ...

    def health_of(self, number: str | None) -> dict[str, Any] | None:
        """What checkNumber last said about ``number`` (None: not checked, or not in v2)."""
        ...

    def numbers(self) -> list[dict[str, Any]]:
        """The numbers as last published upstream (entry fields + Onlinesim id)."""
        ...

    async def outbox(self) -> dict[str, Any]:
        """Journal counts by state, backlog, shipper state (last error, auth alarm)."""
        ...

    def totals(self) -> dict[str, Any]:
        """Flow totals of this process: received, forwarded, parked, uptime, version."""
        ...

    def problem(self) -> str | None:
        """None when healthy, else what is wrong (journal failed, credentials refused)."""
        ...

    def ready(self) -> str | None:
        """None when ready to serve (ports up, journal writable, upstream reached recently)."""
        ...
