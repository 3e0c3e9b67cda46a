"""Final result codes (ITU V.250 / 3GPP TS 27.007 plus vendor spellings)."""

from __future__ import annotations

from muxd.at.events import Final, FinalKind

_EXACT: dict[str, FinalKind] = {
    "OK": "OK",
    "ERROR": "ERROR",
    "NO CARRIER": "NO CARRIER",
    "BUSY": "BUSY",
    "NO ANSWER": "NO ANSWER",
    "NO DIALTONE": "NO DIALTONE",
    "NO DIAL TONE": "NO DIALTONE",
    # Huawei E220 and other vendor forms of "unsupported"
    "COMMAND NOT SUPPORT": "NOT SUPPORTED",
    "COMMAND NOT SUPPORTED": "NOT SUPPORTED",
    "NOT SUPPORTED": "NOT SUPPORTED",
    "TOO MANY PARAMETERS": "NOT SUPPORTED",
}
# Final results are immutable; the common ones are shared instead of rebuilt per line.
_PREBUILT: dict[str, Final] = {line: Final(kind, None, line) for line, kind in _EXACT.items()}


def parse_final(line: str) -> Final | None:
    """The Final for a stripped line, or None if the line is no final result code."""
    final = _PREBUILT.get(line)
    if final is not None:
        return final
    if line.startswith(("+CME ERROR", "+CMS ERROR")):
        rest = line[10:]
        if not rest or rest[0] in ": ":
            return Final("CME" if line[3] == "E" else "CMS", _error_code(rest), line)
    return None


def _error_code(rest: str) -> int | None:
    """``": 10"`` -> 10; verbose forms (``": SIM not inserted"``) and ``""`` -> None."""
    text = rest.lstrip(": ").strip()
    if text.isascii() and text.isdigit():
        return int(text)
    return None
