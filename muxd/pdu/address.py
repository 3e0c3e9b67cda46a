"""TP-OA / TP-DA / TP-RA and the SMSC (RP) address (3GPP TS 23.040 §9.1.2.5)."""

from __future__ import annotations

from muxd.pdu.errors import PduError
from muxd.pdu.gsm7 import decode_septets, encode_chars, pack_septets, unpack_septets

__all__ = [
    "TOA_ALPHANUMERIC",
    "TOA_INTERNATIONAL",
    "TOA_UNKNOWN_ISDN",
    "decode_address",
    "decode_smsc",
    "encode_address",
    "encode_smsc",
]

TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN_ISDN = 0x81
TOA_ALPHANUMERIC = 0xD0

# Semi-octets 0xA..0xE are rendered as lower-case hex so that garbage stays
# visible and reversible (a real capture shows "+b08427829207025"); 0xF is filler.
#: octet -> the same octet with its nibbles swapped (so ``hex()`` gives transmission order).
_SWAP_NIBBLES = bytes(((b & 0x0F) << 4) | (b >> 4) for b in range(256))


def _digits(value: bytes) -> str:
    """Semi-octets in transmission order (low nibble first), every 0xF filler dropped."""
    return value.translate(_SWAP_NIBBLES).hex().replace("f", "")


def _render(toa: int, value: bytes, semi_octets: int) -> str:
    if (toa & 0x70) == 0x50:  # TON 101: alphanumeric, packed GSM 7-bit
        return decode_septets(unpack_septets(value, semi_octets * 4 // 7))
    digits = _digits(value)[:semi_octets]
    if (toa & 0x70) == 0x10 and digits:  # TON 001: international
        return "+" + digits
    return digits


def decode_address(data: bytes, pos: int, what: str) -> tuple[str, int, int]:
    """Decode the address field at ``pos``; return (text, TOA, next position)."""
    end = len(data)
    if pos + 2 > end:
        raise PduError(f"{what} address needs length and TOA octets, {end - pos} present", pos)
    semi = data[pos]
    toa = data[pos + 1]
    n = (semi + 1) >> 1
    start = pos + 2
    if start + n > end:
        raise PduError(
            f"{what} address of {semi} semi-octets needs {n} octets, {end - start} present", start
        )
    if n > 10:
        raise PduError(f"{what} address length {semi} exceeds 20 semi-octets", pos)
    return _render(toa, data[start : start + n], semi), toa, start + n


def decode_smsc(data: bytes) -> tuple[str | None, int]:
    """Decode the SMSC prefix; return (number or None, TPDU start)."""
    if not data:
        raise PduError("empty PDU", 0)
    n = data[0]
    if n == 0:
        return None, 1
    if 1 + n > len(data):
        raise PduError(f"SMSC field of {n} octets, {len(data) - 1} present", 1)
    if n > 11:
        raise PduError(f"SMSC field length {n} exceeds 11 octets", 0)
    if n == 1:
        return None, 2
    toa = data[1]
    text = _render(toa, data[2 : 1 + n], (n - 1) * 2)
    return (text or None), 1 + n


def _bcd(digits: str) -> bytes:
    if len(digits) & 1:
        digits += "f"
    return bytes([int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2)])


def _numeric(number: str) -> tuple[int, str] | None:
    if number.startswith("+"):
        toa, digits = TOA_INTERNATIONAL, number[1:]
    else:
        toa, digits = TOA_UNKNOWN_ISDN, number
    if digits and digits.isascii() and digits.isdigit():
        return toa, digits
    return None


def encode_address(address: str, *, allow_alphanumeric: bool = True) -> bytes:
    """Encode a TP-OA/TP-DA field (length, TOA, value).

    ``"+digits"`` -> TOA 0x91, ``"digits"`` -> 0x81, anything else (if allowed) ->
    alphanumeric TOA 0xD0, packed GSM 7-bit with the length in semi-octets.
    """
    numeric = _numeric(address)
    if numeric is not None:
        toa, digits = numeric
        if len(digits) > 20:
            raise PduError(f"address {address!r} has more than 20 digits")
        return bytes([len(digits), toa]) + _bcd(digits)
    if not allow_alphanumeric:
        raise PduError(f"address {address!r} is not a phone number")
    if not address:
        raise PduError("empty address")
    septets = [s for pair in encode_chars(address) for s in pair]
    if len(septets) > 11:
        raise PduError(f"alphanumeric address {address!r} needs {len(septets)} septets, max 11")
    value = pack_septets(septets)
    return bytes([(len(septets) * 7 + 3) // 4, TOA_ALPHANUMERIC]) + value


def encode_smsc(smsc: str | None) -> bytes:
    """Encode the SMSC prefix (``b"\\x00"`` for None / empty)."""
    if not smsc:
        return b"\x00"
    numeric = _numeric(smsc)
    if numeric is None:
        raise PduError(f"SMSC {smsc!r} is not a phone number")
    toa, digits = numeric
    if len(digits) > 20:
        raise PduError(f"SMSC {smsc!r} has more than 20 digits")
    value = _bcd(digits)
    return bytes([len(value) + 1, toa]) + value
