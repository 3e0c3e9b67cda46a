"""User data header information elements (3GPP TS 23.040 §9.2.3.24)."""

from __future__ import annotations

import msgspec

from muxd.pdu.errors import PduError
from muxd.pdu.records import Concat

__all__ = ["UdhInfo", "concat_ie", "parse_udh"]

IEI_CONCAT_8 = 0x00
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05
IEI_CONCAT_16 = 0x08
IEI_SINGLE_SHIFT = 0x24
IEI_LOCKING_SHIFT = 0x25

#: IEI -> the only legal IEDL for elements whose length is fixed.
_FIXED_LENGTH = {
    IEI_CONCAT_8: 3,
    IEI_PORTS_8: 2,
    IEI_PORTS_16: 4,
    IEI_CONCAT_16: 4,
    IEI_SINGLE_SHIFT: 1,
    IEI_LOCKING_SHIFT: 1,
}


class UdhInfo(msgspec.Struct, frozen=True):
    """What the decoder needs from a UDH."""

    concat: Concat | None = None
    ports: tuple[int, int] | None = None
    single_shift: int | None = None
    locking_shift: int | None = None


_EMPTY = UdhInfo()


def parse_udh(udh: bytes, pos: int) -> UdhInfo:
    """Parse UDH octets (without UDHL); ``pos`` is their offset for error messages.

    Unknown elements are skipped. When an element repeats, the last one wins
    (23.040 §9.2.3.24). A concatenation element with seq 0 or seq > total is
    ignored, as 23.040 requires.
    """
    concat: Concat | None = None
    ports: tuple[int, int] | None = None
    single: int | None = None
    locking: int | None = None
    seen = False
    i = 0
    n = len(udh)
    while i < n:
        if i + 2 > n:
            raise PduError("UDH ends inside an information element header", pos + i)
        iei = udh[i]
        iedl = udh[i + 1]
        start = i + 2
        i = start + iedl
        if i > n:
            raise PduError(
                f"UDH element {iei:#04x} of {iedl} octets overruns the UDH by {i - n}", pos + start
            )
        need = _FIXED_LENGTH.get(iei)
        if need is None:
            continue
        if iedl != need:
            raise PduError(
                f"UDH element {iei:#04x} has length {iedl}, expected {need}", pos + start
            )
        seen = True
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            if iei == IEI_CONCAT_8:
                ref, total, seq, bits = udh[start], udh[start + 1], udh[start + 2], 8
            else:
                ref = udh[start] << 8 | udh[start + 1]
                total, seq, bits = udh[start + 2], udh[start + 3], 16
            concat = Concat(ref, total, seq, bits) if 0 < seq <= total else None
        elif iei == IEI_PORTS_8:
            ports = (udh[start], udh[start + 1])
        elif iei == IEI_PORTS_16:
            ports = (udh[start] << 8 | udh[start + 1], udh[start + 2] << 8 | udh[start + 3])
        elif iei == IEI_SINGLE_SHIFT:
            single = udh[start]
        else:
            locking = udh[start]
    if not seen:
        return _EMPTY
    return UdhInfo(concat, ports, single, locking)


def concat_ie(ref: int, total: int, seq: int, ref_bits: int) -> bytes:
    """A concatenation information element (IEI 0x00 or 0x08) incl. IEI and IEDL."""
    if ref_bits == 8:
        return bytes([IEI_CONCAT_8, 3, ref, total, seq])
    return bytes([IEI_CONCAT_16, 4, ref >> 8, ref & 0xFF, total, seq])
