"""AT syntax helpers for the simulated modem: line splitting, arguments, error codes."""

from __future__ import annotations

import re

__all__ = [
    "EXEC",
    "READ",
    "SET",
    "TEST",
    "CmeError",
    "CmsError",
    "UnknownCommand",
    "format_error",
    "int_arg",
    "parse_extended",
    "split_args",
    "split_line",
]

#: the four forms of an extended command: ``+X``, ``+X?``, ``+X=?``, ``+X=<args>``
EXEC, READ, TEST, SET = "exec", "read", "test", "set"

EXTENDED_PREFIXES = "+^$%#"  # '#' for Telit's vendor commands (AT#CCID, AT#QSS)
_EXTENDED_RE = re.compile(r"([+^$%#][A-Za-z0-9]+)(=\?|\?|=(.*))?", re.DOTALL)
BASIC_RE = re.compile(r"(&?[A-Za-z])(\d*)(=\d*|\?)?")

CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    14: "SIM busy",
    21: "invalid index",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown",
}
CMS_TEXT = {
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    310: "SIM not inserted",
    314: "SIM busy",
    321: "invalid memory index",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}


class CmeError(Exception):
    """Ends a command line with ``ERROR`` / ``+CME ERROR: <code>`` (per ``AT+CMEE``)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class UnknownCommand(CmeError):
    """A command this modem does not know (``ERROR``; Huawei: ``COMMAND NOT SUPPORT``)."""

    def __init__(self) -> None:
        super().__init__(100)


class CmsError(Exception):
    """Ends a command line with ``+CMS ERROR: <code>`` (SMS commands, 27.005)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def format_error(exc: CmeError | CmsError, cmee: int) -> bytes:
    """The final result code for ``exc``; ``cmee`` 2 gives verbose texts."""
    if isinstance(exc, CmsError):
        text = CMS_TEXT.get(exc.code) if cmee == 2 else None
        return f"\r\n+CMS ERROR: {text or exc.code}\r\n".encode("ascii")
    if cmee == 0:
        return b"\r\nERROR\r\n"
    if cmee == 2:
        return f"\r\n+CME ERROR: {CME_TEXT.get(exc.code, exc.code)}\r\n".encode("ascii")
    return f"\r\n+CME ERROR: {exc.code}\r\n".encode("ascii")


def split_args(raw: str) -> list[str]:
    """Split ``1,"SM",,2`` into ``["1", "SM", "", "2"]`` (quotes removed, commas inside kept)."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    args.append("".join(current).strip())
    return args


def split_line(body: str) -> list[str] | None:
    """Split what follows ``AT`` into single commands (``E0V1;+CMEE=1``); None on bad syntax."""
    commands: list[str] = []
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char in " ;":
            pos += 1
        elif char in EXTENDED_PREFIXES:
            end, quoted = pos, False
            while end < len(body) and (quoted or body[end] != ";"):
                if body[end] == '"':
                    quoted = not quoted
                end += 1
            commands.append(body[pos:end])
            pos = end + 1
        else:
            match = BASIC_RE.match(body, pos)
            if match is None:
                return None
            commands.append(match.group(0))
            pos = match.end()
    return commands


def parse_extended(command: str) -> tuple[str, str, list[str]]:
    """``+CMGR=1`` -> ``("+CMGR", SET, ["1"])``; raises CmeError(100) on bad syntax."""
    match = _EXTENDED_RE.fullmatch(command)
    if match is None:
        raise CmeError(100)
    name, suffix = match.group(1).upper(), match.group(2)
    if suffix is None:
        return name, EXEC, []
    if suffix == "?":
        return name, READ, []
    if suffix == "=?":
        return name, TEST, []
    return name, SET, split_args(match.group(3) or "")


def int_arg(args: list[str], pos: int, low: int, high: int, default: int | None = None) -> int:
    """Integer argument ``pos`` within ``low..high``; ``default`` when empty/absent."""
    raw = args[pos] if pos < len(args) else ""
    if raw == "":
        if default is None:
            raise CmeError(50)
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CmeError(50) from None
    if not low <= value <= high:
        raise CmeError(50)
    return value
