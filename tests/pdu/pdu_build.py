"""Hand-built PDUs for field-level tests (independent of muxd.pdu's encoder)."""

from __future__ import annotations

#: SMSC +12345678901, first octet placeholder, OA +18005551212, PID 00.
SMSC = "07912143658709F1"
OA = "0B918100551512F2"
SCTS = "11101021436500"  # 2011-01-01 12:34:56 +00


def pack(septets: bytes | list[int], fill_prefix: bytes = b"", prefix_septets: int = 0) -> bytes:
    """Reference septet packer (bit by bit, deliberately naive)."""
    bits: list[int] = []
    for octet in fill_prefix:
        bits.extend((octet >> i) & 1 for i in range(8))
    bits.extend([0] * (prefix_septets * 7 - len(bits)))
    for s in septets:
        bits.extend((s >> i) & 1 for i in range(7))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))


def deliver_hex(
    *,
    dcs: int = 0x00,
    ud: bytes = b"",
    udl: int | None = None,
    udh: bytes | None = None,
    septets: bytes | None = None,
    fo: int = 0x04,
    pid: int = 0x00,
    oa: str = OA,
    scts: str = SCTS,
    smsc: str = SMSC,
) -> str:
    """Build an SMS-DELIVER. Give ``septets`` (gsm7, packed here after ``udh``) or raw ``ud``."""
    if udh is not None:
        fo |= 0x40
    if septets is not None:
        hdr = b"" if udh is None else bytes([len(udh)]) + udh
        hdr_septets = (len(hdr) * 8 + 6) // 7
        body = pack(septets, hdr, hdr_septets)
        length = hdr_septets + len(septets) if udl is None else udl
    else:
        body = (b"" if udh is None else bytes([len(udh)]) + udh) + ud
        length = len(body) if udl is None else udl
    return (
        smsc
        + f"{fo:02X}"
        + oa
        + f"{pid:02X}{dcs:02X}"
        + scts
        + f"{length:02X}"
        + body.hex().upper()
    )
