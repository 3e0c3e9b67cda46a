"""GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) and septet packing.

Tables are built once at import time. A *locking* table is a 128-character
``str`` (index = septet); a *single shift* table is a 128-tuple of ``str | None``
where ``None`` marks an undefined code point (the receiver then shows the
character of the locking table, 23.038 §6.2.1.1).
"""

from __future__ import annotations

from codecs import charmap_decode
from collections.abc import Iterable, Mapping

from muxd.pdu.errors import PduError

__all__ = [
    "DEFAULT_EXTENSION",
    "DEFAULT_LOCKING",
    "ESC",
    "Septets",
    "decode_septets",
    "encode_chars",
    "encoder_maps",
    "is_gsm7",
    "pack_septets",
    "septet_count",
    "unpack_septets",
]

ESC = 0x1B

# fmt: off
_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# fmt: on
assert len(_DEFAULT) == 128

#: 23.038 §6.2.1.1. 0x0D (CR2) and 0x1B (reserved) have no character of their own.
_DEFAULT_EXT: dict[int, str] = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

DEFAULT_LOCKING: str = _DEFAULT.replace("\x1b", " ")
DEFAULT_EXTENSION: tuple[str | None, ...] = tuple(_DEFAULT_EXT.get(i) for i in range(128))

Septets = tuple[int, ...]


def decode_septets(
    septets: bytes,
    locking: str = DEFAULT_LOCKING,
    shift: tuple[str | None, ...] = DEFAULT_EXTENSION,
) -> str:
    """Septet values (one per byte, each < 128) -> text.

    ESC + code looks the code up in ``shift``; an undefined code falls back to the
    locking table (23.038 §6.2.1.1). ESC ESC renders as a space; a trailing ESC is
    dropped (it is half of an escape pair split across concatenated parts, which
    ``reassemble`` joins from raw septets).
    """
    # charmap_decode maps each septet through the 128-character table in C.
    if ESC not in septets:
        return charmap_decode(septets, "strict", locking)[0]
    if b"\x1b\x1b" not in septets:
        table = _escaped_table(locking, shift)
        if table is not None:
            # Mark every septet that follows an ESC with bit 7 (SWAR on one big int:
            # a byte b < 0x80 is ESC iff (b ^ 0x1B) + 0x7F leaves bit 7 clear), then map
            # 0x00-0x7F through the locking table (ESC -> "\x1b", removed after) and
            # 0x80-0xFF through the single shift table, all in C.
            n = len(septets)
            k1b, k7f, k80 = _K1B, _K7F, _K80
            if n > _K_OCTETS:  # a reassembled message
                k1b, k7f, k80 = (int.from_bytes(bytes([b]) * n, "little") for b in (27, 127, 128))
            x = int.from_bytes(septets, "little")
            esc = k80 ^ (((x ^ k1b) + k7f) & k80)
            x |= (esc << 8) & ((1 << (n << 3)) - 1)
            text: str = charmap_decode(x.to_bytes(n, "little"), "strict", table)[0]
            return text.replace("\x1b", "")
    pieces = septets.split(b"\x1b")
    out = [charmap_decode(pieces[0], "strict", locking)[0]]
    append = out.append
    escaped = True  # does the current piece follow an ESC still waiting for its code?
    last = len(pieces) - 1
    for k in range(1, last + 1):
        piece = pieces[k]
        if not escaped:  # follows the second ESC of an ESC ESC pair
            escaped = True
        elif not piece:  # ESC ESC (space) or a trailing ESC (dropped)
            if k != last:
                append(" ")
                escaped = False
            continue
        else:
            code = piece[0]
            c = shift[code]
            append(locking[code] if c is None else c)
            piece = piece[1:]
        append(charmap_decode(piece, "strict", locking)[0])
    return "".join(out)


_K_OCTETS = 256  # one part holds at most 160 septets; reassembled texts may be longer
_K1B = int.from_bytes(b"\x1b" * _K_OCTETS, "little")
_K7F = int.from_bytes(b"\x7f" * _K_OCTETS, "little")
_K80 = int.from_bytes(b"\x80" * _K_OCTETS, "little")
_ESCAPED_TABLES: dict[tuple[int, int], tuple[str, tuple[str | None, ...], str | None]] = {}


def _escaped_table(locking: str, shift: tuple[str | None, ...]) -> str | None:
    """256-character decoding table for ``decode_septets``'s escape path, or None.

    Codes 0x00-0x7F: the locking table with ESC as "\x1b"; 0x80 + code: what ESC +
    code means (the single shift character, else the locking one). None when the
    locking table itself holds "\x1b" (then the sentinel would be ambiguous).
    """
    key = (id(locking), id(shift))
    entry = _ESCAPED_TABLES.get(key)
    if entry is None or entry[0] is not locking or entry[1] is not shift:
        table: str | None = None
        if "\x1b" not in locking:
            low = locking[:ESC] + "\x1b" + locking[ESC + 1 :]
            high = "".join([locking[i] if c is None else c for i, c in enumerate(shift)])
            table = low + high
        if len(_ESCAPED_TABLES) >= 256:
            _ESCAPED_TABLES.clear()
        entry = _ESCAPED_TABLES[key] = (locking, shift, table)
    return entry[2]


def _spread_levels() -> tuple[tuple[int, int, int], ...]:
    """Masks that move septets from 7-bit to 8-bit strides, halving blocks per level.

    Level g splits every block of 2g septets (16g bits once spread) into its low and
    high halves and shifts the high half up by g bits. Done on one big int, this
    unpacks a whole TP-UD in 8 rounds of C-level bit operations.
    """
    levels: list[tuple[int, int, int]] = []
    g = MAX_SEPTETS // 2
    while g >= 1:
        lo = hi = 0
        half = (1 << (7 * g)) - 1
        for block in range(MAX_SEPTETS // (2 * g)):
            base = 16 * g * block
            lo |= half << base
            hi |= half << (base + 7 * g)
        levels.append((g, lo, hi))
        g //= 2
    return tuple(levels)


MAX_SEPTETS = 256  # TP-UDL is one octet
_LEVELS = _spread_levels()


def unpack_septets(data: bytes, count: int, skip: int = 0) -> bytes:
    """Unpack ``count`` (<= 256) septets from packed ``data``; drop the first ``skip``.

    Bits beyond ``count`` septets (fill bits, surplus octets) are ignored; missing
    bits read as zero, so the caller checks ``len(data) * 8 >= count * 7``.
    """
    if count <= 0:
        return b""
    x = int.from_bytes(data, "little") & ((1 << (7 * count)) - 1)
    # Only levels whose blocks can hold septets >= g are needed: 2g >= count.
    for g, lo, hi in _LEVELS[8 - (count - 1).bit_length() :]:
        x = (x & lo) | ((x & hi) << g)
    return x.to_bytes(count, "little")[skip:]


def pack_septets(septets: Iterable[int], prefix: bytes = b"", prefix_septets: int = 0) -> bytes:
    """Pack septets, after ``prefix`` octets that occupy ``prefix_septets`` septets.

    ``prefix`` is the UDHL+UDH; the gap up to the septet boundary is fill bits.
    """
    n = 0
    shift = 0
    for s in septets:
        n |= s << shift
        shift += 7
    total = prefix_septets + shift // 7
    n = (n << (7 * prefix_septets)) | int.from_bytes(prefix, "little")
    return n.to_bytes((total * 7 + 7) // 8, "little")


def encoder_maps(
    locking: str = DEFAULT_LOCKING,
    shift: tuple[str | None, ...] = DEFAULT_EXTENSION,
) -> tuple[dict[str, int], dict[str, int]]:
    """Reverse maps (char -> code) for a locking table and a single shift table."""
    main: dict[str, int] = {}
    for code, ch in enumerate(locking):
        if code == ESC or (ch == " " and code != 0x20):
            continue
        main.setdefault(ch, code)
    ext: dict[str, int] = {}
    for code, maybe in enumerate(shift):
        if maybe is not None and maybe not in main and code != ESC:
            ext.setdefault(maybe, code)
    return main, ext


_MAIN, _EXT = encoder_maps()


def is_gsm7(text: str) -> bool:
    """True if every character is in the default alphabet or its extension table."""
    main, ext = _MAIN, _EXT
    return all(c in main or c in ext for c in text)


def septet_count(text: str) -> int:
    """Septets ``text`` needs in the default alphabet (escapes count twice)."""
    ext = _EXT
    return len(text) + sum(1 for c in text if c in ext)


def encode_chars(
    text: str,
    maps: tuple[Mapping[str, int], Mapping[str, int]] = (_MAIN, _EXT),
) -> list[Septets]:
    """Text -> one septet tuple per character (1 septet, or 2 for ESC + code).

    Raises PduError naming the first character that cannot be encoded.
    """
    main, ext = maps
    out: list[Septets] = []
    for i, c in enumerate(text):
        code = main.get(c)
        if code is not None:
            out.append((code,))
            continue
        code = ext.get(c)
        if code is None:
            raise PduError(f"character {c!r} at index {i} is not in the GSM 7-bit alphabet")
        out.append((ESC, code))
    return out
