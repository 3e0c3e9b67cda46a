"""The sans-I/O AT parser: bytes from the modem in, events out.

No I/O, no clock, no logging: the caller writes commands, tells the parser about them
(:meth:`AtParser.command_sent`), feeds every byte it reads and acts on the events.

Routing of one line (stripped; empty lines are skipped):

With a command in flight
  1. a line starting with ``>`` is the ``AT+CMGS`` prompt -> Prompt (the rest of the line,
     e.g. the echoed PDU, is routed on its own). The prompt has no line end, so this is also
     checked on the unfinished line at the end of every ``feed()``;
  2. the command line itself (compared case-insensitively) -> Echo;
  3. a final result code -> Final; the command is over (lines are URCs again);
  4. the command's expected prefix (``AT+CMGR=3`` -> ``+CMGR``) -> Info, unless it is an SMS
     URC (``+CMTI``, ``+CMT``, ``+CDS``, ``+CDSI``, ``+CBM``);
  5. a known URC name (:data:`muxd.at.urc.URC_NAMES`) -> Urc;
  6. anything else (``867530021234567`` for ``AT+CGSN``, ``+CCID: ...``) -> Info.

With no command in flight every line is a Urc (``NO CARRIER``, a stray ``OK``, junk included);
a ``>`` is no prompt then.

Two-line forms: a ``+CMGR:`` / ``+CMGL:`` Info or a ``+CMT:`` / ``+CDS:`` / ``+CBM:`` Urc
header waits for the next line; if it is hex it becomes the ``pdu``. URCs (known names) that
slip in between pass through and the header keeps waiting, so the Urc comes out before the
header it interrupted. Any other line ends the wait: the header comes out with ``pdu=None``
and the line is routed normally, except unknown non-hex junk, which becomes
Garbage("expected pdu"). A header announcing length 0 (``+CMGR: 0,,0``) does not wait.
"""

from __future__ import annotations

from muxd.at.buffer import ALLOWED, LineBuffer, clean, decode, is_hex
from muxd.at.commands import expected_prefix
from muxd.at.events import (
    EXPECTED_PDU,
    INCOMPLETE_RESPONSE,
    Echo,
    Event,
    Garbage,
    Info,
    Prompt,
    Urc,
)
from muxd.at.results import parse_final
from muxd.at.urc import (
    SMS_URC_NAMES,
    TWO_LINE_INFO_NAMES,
    TWO_LINE_URC_NAMES,
    URC_NAMES,
    announces_empty_pdu,
    split_name,
)

_PROMPT = Prompt()


class _Header:
    """A two-line header waiting for its PDU line."""

    __slots__ = ("args", "is_urc", "line", "name")

    def __init__(self, is_urc: bool, name: str, args: str, line: str) -> None:
        self.is_urc = is_urc
        self.name = name
        self.args = args
        self.line = line

    def complete(self, pdu: str | None) -> Info | Urc:
        if self.is_urc:
            return Urc(self.name, self.args, pdu, self.line)
        return Info(self.line, pdu)


class AtParser:
    """Incremental AT response parser for one port; see the module docstring for routing.

    ``feed()`` never raises and holds at most ``max_line`` bytes of an unfinished line.
    """

    __slots__ = ("_command", "_command_upper", "_expect", "_header", "_lines", "_queued")

    def __init__(self, *, max_line: int = 1024) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be positive, got {max_line!r}")
        self._lines = LineBuffer(max_line)
        self._command: str | None = None
        self._command_upper = ""
        self._expect: str | None = None
        self._header: _Header | None = None
        # Events produced outside feed() (by command_done/command_sent), returned by the next feed.
        self._queued: list[Event] = []

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held back (at most ``max_line``)."""
        return len(self._lines)

    @property
    def command(self) -> str | None:
        """The command in flight, or None."""
        return self._command

    def command_sent(self, command: str) -> None:
        """Call after writing ``command`` (e.g. ``"AT+CMGR=3"``, without CR).

        Sets the line used for echo detection and the expected prefix for routing.
        """
        self._abandon_info_header()
        self._command = command.strip()
        self._command_upper = self._command.upper()
        self._expect = expected_prefix(self._command)

    def command_done(self) -> None:
        """The caller's command finished or timed out: lines are URCs until ``command_sent``.

        A ``+CMGR``/``+CMGL`` header still waiting for its PDU is reported as
        Garbage("incomplete response") by the next ``feed()``.
        """
        self._abandon_info_header()
        self._command = None
        self._expect = None

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completed (possibly none). Never raises."""
        lines = self._lines
        out: list[Event] = self._queued
        if out:
            self._queued = []
        else:
            out = []
        if not lines.append_partial(data):
            for item in lines.push(data):
                if isinstance(item, Garbage):
                    out.append(item)
                else:
                    self._raw_line(item, out)
        while self._command is not None and lines.take_prompt(out):
            self._flush_header(out)
            out.append(_PROMPT)
        return out

    # -- internals --------------------------------------------------------------------------

    def _abandon_info_header(self) -> None:
        header = self._header
        if header is not None and not header.is_urc:
            self._header = None
            self._queued.append(Garbage(header.line.encode(), INCOMPLETE_RESPONSE))

    def _flush_header(self, out: list[Event]) -> None:
        header = self._header
        if header is not None:
            self._header = None
            out.append(header.complete(None))

    def _raw_line(self, raw: bytes | bytearray, out: list[Event]) -> None:
        # Fast path: a line without junk bytes only needs its blanks stripped.
        raw = clean(raw, out) if raw.translate(None, ALLOWED) else raw.strip()
        if not raw:
            return
        header = self._header
        if header is not None and is_hex(raw):
            self._header = None
            out.append(header.complete(raw.decode("ascii")))
            return
        self._line(raw.decode("ascii") if raw.isascii() else decode(raw, out), out)

    def _line(self, text: str, out: list[Event]) -> None:
        command = self._command
        if command is not None:
            while text[0] == ">":
                self._flush_header(out)
                out.append(_PROMPT)
                # Only ASCII blanks, as LineBuffer.take_prompt does for a prompt without line end.
                text = text[1:].lstrip(" \t")
                if not text:
                    return
            if len(text) == len(command) and (
                text == command or text.upper() == self._command_upper
            ):
                self._flush_header(out)
                out.append(Echo(text))
                return
            final = parse_final(text)
            if final is not None:
                self._flush_header(out)
                out.append(final)
                self._command = None
                self._expect = None
                return
        name, args = split_name(text)
        if command is not None and name == self._expect and name not in SMS_URC_NAMES:
            self._flush_header(out)
            if name in TWO_LINE_INFO_NAMES and not announces_empty_pdu(args):
                self._header = _Header(False, name, args, text)
            else:
                out.append(Info(text))
            return
        # With no command in flight, a late +CMGR/+CMGL answer keeps its PDU line too.
        if name in URC_NAMES or (command is None and name in TWO_LINE_URC_NAMES):
            if name in TWO_LINE_URC_NAMES:
                self._flush_header(out)
                if not announces_empty_pdu(args):
                    self._header = _Header(True, name, args, text)
                    return
            # Any other URC between a header and its PDU line leaves the header waiting.
            out.append(Urc(name, args, None, text))
            return
        if self._header is not None:
            self._flush_header(out)
            out.append(Garbage(text.encode(), EXPECTED_PDU))
            return
        if command is None:
            out.append(Urc(name, args, None, text))
        else:
            out.append(Info(text))
