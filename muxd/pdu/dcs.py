"""TP-DCS coding groups (3GPP TS 23.038 §4)."""

from __future__ import annotations

from muxd.pdu.errors import PduError

__all__ = ["BIT8", "COMPRESSED", "GSM7", "UCS2", "dcs_for", "parse_dcs"]

GSM7 = "gsm7"
UCS2 = "ucs2"
BIT8 = "8bit"
COMPRESSED = "compressed"

_GENERAL_ALPHABET = (GSM7, BIT8, UCS2, GSM7)  # 11 is reserved: "assume GSM 7-bit"


def _parse(dcs: int) -> tuple[str, int | None]:
    group = dcs >> 4
    if group < 0x8:  # 00xx general data coding, 01xx marked for automatic deletion
        encoding = COMPRESSED if dcs & 0x20 else _GENERAL_ALPHABET[(dcs >> 2) & 0x03]
        return encoding, (dcs & 0x03) if dcs & 0x10 else None
    if group < 0xC:  # 1000..1011 reserved coding groups
        return GSM7, None
    if group < 0xE:  # 1100 / 1101 message waiting indication, GSM 7-bit
        return GSM7, None
    if group == 0xE:  # 1110 message waiting indication, UCS-2
        return UCS2, None
    # 1111 data coding / message class: bit 2 selects 8-bit data, class always present
    return (BIT8 if dcs & 0x04 else GSM7), dcs & 0x03


_TABLE: tuple[tuple[str, int | None], ...] = tuple(_parse(d) for d in range(256))


def parse_dcs(dcs: int) -> tuple[str, int | None]:
    """DCS octet -> (encoding, message class or None)."""
    return _TABLE[dcs]


def dcs_for(encoding: str) -> int:
    """DCS octet an encoder uses for ``encoding`` (general group, no class)."""
    if encoding == GSM7:
        return 0x00
    if encoding == UCS2:
        return 0x08
    if encoding == BIT8:
        return 0x04
    raise PduError(f"cannot encode with encoding {encoding!r}")
