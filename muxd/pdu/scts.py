"""TP-SCTS / TP-DT: 7 semi-octet-swapped BCD octets with a quarter-hour zone."""

from __future__ import annotations

import datetime

from muxd.pdu.errors import PduError

__all__ = ["decode_scts", "encode_scts"]

#: swapped BCD octet -> value, or -1 when a nibble is not a decimal digit.
_BCD: tuple[int, ...] = tuple(
    (b & 0x0F) * 10 + (b >> 4) if (b & 0x0F) < 10 and (b >> 4) < 10 else -1 for b in range(256)
)
#: quarter hours -> timezone, for every offset a TZ octet can express (±79 quarters).
_ZONES: dict[int, datetime.timezone] = {
    q: datetime.timezone(datetime.timedelta(minutes=15 * q)) for q in range(-79, 80)
}


def decode_scts(data: bytes, pos: int) -> datetime.datetime | None:
    """Decode the 7 octets at ``data[pos:]`` (the caller checked they exist).

    None when they are not a time (a non-BCD digit, month 13, hour 25, 30 February; any zone
    octet of BCD digits is an offset, ±19:45 at most). The stamp is the SMSC's, and a bad one
    must not cost the message its text: it is reported unknown, never raised.
    """
    bcd = _BCD
    yy = bcd[data[pos]]
    mo = bcd[data[pos + 1]]
    dd = bcd[data[pos + 2]]
    hh = bcd[data[pos + 3]]
    mi = bcd[data[pos + 4]]
    ss = bcd[data[pos + 5]]
    tzb = data[pos + 6]
    if (yy | mo | dd | hh | mi | ss) < 0 or (tzb >> 4) > 9:
        return None
    tzq = (tzb & 0x07) * 10 + (tzb >> 4)
    tz = _ZONES[-tzq if tzb & 0x08 else tzq]
    try:
        return datetime.datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=tz)
    except ValueError:
        return None


def _swap(v: int) -> int:
    return (v % 10) << 4 | (v // 10)


def encode_scts(when: datetime.datetime) -> bytes:
    """Aware datetime -> 7 octets; the offset must be a whole number of quarter hours."""
    off = when.utcoffset()
    if off is None:
        raise PduError("timestamp must be timezone-aware")
    minutes, rem = divmod(int(off.total_seconds()), 60)
    quarters, qrem = divmod(abs(minutes), 15)
    if rem or qrem or quarters > 79:
        raise PduError(f"timezone offset {off} is not a quarter-hour multiple within ±19:45")
    if not 2000 <= when.year <= 2099:
        raise PduError(f"year {when.year} outside 2000..2099")
    tz = _swap(quarters) | (0x08 if minutes < 0 else 0)
    vals = (when.year - 2000, when.month, when.day, when.hour, when.minute, when.second)
    return bytes([*(_swap(v) for v in vals), tz])
