"""UCS-2 / UTF-16BE user data (3GPP TS 23.038 §6.2.3), surrogate aware."""

from __future__ import annotations

from muxd.pdu.errors import PduError

__all__ = ["decode_ucs2", "decode_ucs2_strict"]


def _is_high(u: str) -> bool:
    return "\ud800" <= u <= "\udbff"


def _is_low(u: str) -> bool:
    return "\udc00" <= u <= "\udfff"


def decode_ucs2(data: bytes) -> str:
    """Decode one part's UCS-2 octets as far as possible.

    A trailing odd octet, a leading low surrogate and a trailing high surrogate
    (halves of a pair split across concatenated parts) are left out; any other
    unpaired surrogate becomes U+FFFD so the result is always valid text.
    """
    if len(data) & 1:
        data = data[:-1]
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-16-be", "surrogatepass")
    if text and _is_low(text[0]):
        text = text[1:]
    if text and _is_high(text[-1]):
        text = text[:-1]
    return "".join(["\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text])


def decode_ucs2_strict(data: bytes) -> str:
    """Decode complete (reassembled) UCS-2 octets; unpaired surrogates raise PduError."""
    if len(data) & 1:
        raise PduError(f"UCS-2 user data has an odd number of octets ({len(data)})")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        pos = exc.start
        text = data[pos : pos + 2].hex().upper()
        what = "dangling surrogate" if pos + 2 >= len(data) else "unpaired surrogate"
        raise PduError(f"UCS-2 {what} {text} at user data octet {pos}") from None
