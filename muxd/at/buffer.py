"""Bounded line splitting and byte hygiene for the AT parser (sans-I/O).

Lines end with CR, LF or CRLF (modems mix them: the echo often ends with a bare CR, Huawei
E1752 adds blank lines); empty lines never surface. Only new bytes are searched for a
terminator, so feeding one byte at a time stays O(n).
"""

from __future__ import annotations

from muxd.at.events import CONTROL_BYTES, INVALID_UTF8, LINE_TOO_LONG, Event, Garbage

_TERMINATORS = b"\r\n"

# Bytes a line may contain: printable ASCII, TAB, Ctrl-Z and ESC (they end or cancel a PDU
# typed after the "> " prompt and come back in its echo), and the bytes that can occur in
# UTF-8 (continuation bytes 0x80-0xBF, lead bytes 0xC2-0xF4). Everything else (NUL, 0xFF,
# other C0 controls, DEL, bytes that never occur in UTF-8) is junk and gets stripped.
ALLOWED = (
    bytes(range(0x20, 0x7F)) + b"\t\x1a\x1b" + bytes(range(0x80, 0xC0)) + bytes(range(0xC2, 0xF5))
)
JUNK = bytes(b for b in range(256) if b not in ALLOWED and b not in b"\r\n")
_HEX = b"0123456789ABCDEFabcdef"
_SPACE = b" \t"


def _first_terminator(data: bytes) -> int:
    """Index of the first CR or LF in ``data``, or -1."""
    cr = data.find(b"\r")
    lf = data.find(b"\n", 0, cr) if cr >= 0 else data.find(b"\n")
    return lf if lf >= 0 else cr


def clean(raw: bytes | bytearray, garbage: list[Event]) -> bytes | bytearray:
    """``raw`` without junk bytes and surrounding whitespace; a Garbage per repair."""
    junk = raw.translate(None, ALLOWED)
    if junk:
        garbage.append(Garbage(bytes(junk), CONTROL_BYTES))
        raw = raw.translate(None, JUNK)
    return raw.strip()


def decode(raw: bytes | bytearray, garbage: list[Event]) -> str:
    """Decode a cleaned line: ASCII fast path, then UTF-8, then UTF-8 with replacements."""
    if raw.isascii():
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        garbage.append(Garbage(bytes(raw), INVALID_UTF8))
        return raw.decode("utf-8", "replace")


def is_hex(raw: bytes | bytearray) -> bool:
    """True for a non-empty line of hex digits only (a PDU); ``raw`` is already cleaned."""
    return bool(raw) and not raw.translate(None, _HEX)


class LineBuffer:
    """Splits bytes into raw lines; holds at most ``max_line`` bytes of a partial line.

    A line longer than ``max_line`` is dropped as Garbage("line too long"); if it has no end
    yet, everything up to the next terminator is dropped too (one Garbage per ``push``).
    """

    __slots__ = ("_buf", "_discarding", "_lead", "_max_line")

    def __init__(self, max_line: int) -> None:
        self._buf = bytearray()
        self._max_line = max_line
        self._discarding = False
        # Leading bytes of the partial line known to be junk/blanks (-1: it is no prompt).
        self._lead = 0

    def __len__(self) -> int:
        return len(self._buf)

    def append_partial(self, data: bytes) -> bool:
        """Fast path: append ``data`` if it completes no line and keeps the line within
        ``max_line``; return False (and append nothing) if :meth:`push` is needed."""
        buf = self._buf
        if (
            self._discarding
            or len(buf) + len(data) > self._max_line
            or b"\r" in data
            or b"\n" in data
        ):
            return False
        buf += data
        return True

    def push(self, data: bytes) -> list[bytes | bytearray | Garbage]:
        """Append ``data``; return the complete non-empty raw lines and overflow Garbage."""
        out: list[bytes | bytearray | Garbage] = []
        if self._discarding:
            cut = _first_terminator(data)
            if cut < 0:
                if data:
                    out.append(Garbage(bytes(data), LINE_TOO_LONG))
                return out
            if cut:
                out.append(Garbage(bytes(data[:cut]), LINE_TOO_LONG))
            self._discarding = False
            data = data[cut + 1 :]
        buf = self._buf
        max_line = self._max_line
        # The buffer never holds a terminator between calls: only the new bytes need a look.
        if b"\r" not in data and b"\n" not in data:
            buf += data
        else:
            work: bytes | bytearray = data
            if buf:
                buf += data
                work = buf
            lines = work.splitlines()  # bytes.splitlines() splits at \r, \n and \r\n only
            rest = b"" if work[-1] in _TERMINATORS else lines.pop()
            if len(work) > max_line and max(map(len, lines)) > max_line:
                out.extend(
                    Garbage(bytes(line), LINE_TOO_LONG) if len(line) > max_line else line
                    for line in lines
                    if line
                )
            else:
                out.extend(filter(None, lines))
            self._buf = buf = bytearray(rest)
            self._lead = 0
        if len(buf) > max_line:
            out.append(Garbage(bytes(buf), LINE_TOO_LONG))
            buf.clear()
            self._lead = 0
            self._discarding = True
        return out

    def take_prompt(self, garbage: list[Event]) -> bool:
        """If the partial line starts with ``>`` (after junk/blanks), consume it and the blanks
        after it and return True; junk skipped on the way is reported in ``garbage``.

        Resumes where the previous call stopped, so calling it after every 1-byte push is O(1).
        """
        lead = self._lead
        if lead < 0:
            return False
        buf = self._buf
        size = len(buf)
        while lead < size:
            byte = buf[lead]
            if byte == 0x3E:  # ">"
                end = lead + 1
                while end < size and buf[end] in _SPACE:
                    end += 1
                junk = buf[:lead].translate(None, _SPACE)
                if junk:
                    garbage.append(Garbage(bytes(junk), CONTROL_BYTES))
                del buf[:end]
                self._lead = 0
                return True
            if byte not in JUNK and byte not in _SPACE:
                self._lead = -1
                return False
            lead += 1
        self._lead = lead
        return False
