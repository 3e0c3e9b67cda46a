"""GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) and septet packing.

Tables are built once at import time. A *locking* table is a 128-tuple of
``str`` (index = septet); a *single shift* table is a 128-tuple of ``str | None``
where ``None`` marks an undefined code point (the receiver then shows the
character of the locking table, 23.038 §6.2.1.1).
"""

from __future__ import annotations

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

DEFAULT_LOCKING: tuple[str, ...] = tuple(" " if c == "\x1b" else c for c in _DEFAULT)
DEFAULT_EXTENSION: tuple[str | None, ...] = tuple(_DEFAULT_EXT.get(i) for i in range(128))

Septets = tuple[int, ...]


def decode_septets(
    septets: bytes,
    locking: tuple[str, ...] = DEFAULT_LOCKING,
    shift: tuple[str | None, ...] = DEFAULT_EXTENSION,
) -> str:
    """Septet values (one per byte, each < 128) -> text.

    ESC + code looks the code up in ``shift``; an undefined code falls back to the
    locking table (23.038 §6.2.1.1). ESC ESC renders as a space; a trailing ESC is
    dropped (it is half of an escape pair split across concatenated parts, which
    ``reassemble`` joins from raw septets).
    """
    if ESC not in septets:
        return "".join([locking[s] for s in septets])
    out: list[str] = []
    append = out.append
    i = 0
    n = len(septets)
    while i < n:
        s = septets[i]
        i += 1
        if s != ESC:
            append(locking[s])
            continue
        if i >= n:
            break
        s = septets[i]
        i += 1
        if s == ESC:
            append(" ")
            continue
        c = shift[s]
        append(locking[s] if c is None else c)
    return "".join(out)


def unpack_septets(data: bytes, count: int, skip: int = 0) -> bytes:
    """Unpack ``count`` septets from packed ``data`` and drop the first ``skip``.

    The caller guarantees ``len(data) * 8 >= count * 7``.
    """
    n = int.from_bytes(data, "little")
    if skip:
        n >>= 7 * skip
    return bytes([(n >> s) & 0x7F for s in range(0, 7 * (count - skip), 7)])


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
    locking: tuple[str, ...] = DEFAULT_LOCKING,
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
