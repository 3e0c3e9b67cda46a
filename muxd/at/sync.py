"""Knowing which answer belongs to which command, after a timeout (sans-I/O, no clock).

The problem. A modem answers commands in order, one at a time, and an answer may come after
its command's deadline (a busy module, a slow SIM). The next command's answer then queues
behind the late one: if the caller sent the next command at once, the late final result
completes it, and from then on every command gets the previous command's answer. An
``AT+CMGR=k`` then returns another index's PDU and the ``AT+CMGD=k`` that follows deletes
index ``k`` unread.

The choice. After a timeout (or a cancel, or a final result arriving with no command in
flight) the session is UNSYNCHRONISED and the *epoch* (a counter of losses of sync) moves on.
Before its next command the session sends a *marker*: a harmless query whose answer carries
an information line that no other pending answer can carry (``AT+CMEE?`` answers
``+CMEE: 1``). Everything that arrives before that line, late finals and late PDUs included,
is discarded; the marker's final result after it, then a short quiet period with nothing
more, prove that the modem has caught up: the answer to the next command will be its own.
A marker whose own answer may still be on its way (it timed out, or was the command that
timed out) is never used again until sync is proven: each attempt uses another marker. The
attempts are spaced by a floor and bounded: past the bound the port is hung (the caller
closes and reopens it).

Why a marker and not only a pause: a pause cannot tell a modem that is still working from
one that is done, and any pause is shorter than some late answer; the marker is answered
after everything queued before it, so seeing its answer is proof, however late it comes.
Why not reopen the port at once: a reopened serial port still receives what the modem sends
afterwards, so a reopen proves nothing by itself (a fresh session starts unsynchronised and
proves sync the same way).

The epoch is what makes deletion safe: a caller deletes a stored message only if it read it
in the epoch that is still current, so no timeout came between the read and the delete.

This module only decides: the caller writes the marker, feeds every parser event that
arrives while a marker is out (:meth:`AtSync.feed`), and asks :meth:`AtSync.poll` what to do
next, passing the time in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from muxd.at.events import Echo, Event, Final, Garbage, Info, Prompt, Urc
from muxd.at.results import parse_final
from muxd.at.urc import URC_NAMES, split_name

#: Markers, in order of preference: (query, the prefix of its information line). All are
#: read-only queries every modem answers, even before its SIM or SMS stack is ready, and no
#: command muxd sends in normal operation answers with these prefixes (``AT+CSQ`` is polled,
#: so it comes last: it is used only when the others are all suspect).
MARKERS: tuple[tuple[str, str], ...] = (
    ("AT+CMEE?", "+CMEE"),
    ("AT+CSCS?", "+CSCS"),
    ("AT+CMGF?", "+CMGF"),
    ("AT+CSQ", "+CSQ"),
)

# A marker answers as fast as any query, but it queues behind the late command. Markers that
# time out stay queued too and later ones wait behind them, so the attempts together cover an
# answer up to RESYNC_ATTEMPTS * MARKER_TIMEOUT late; later than that the port is hung.
MARKER_TIMEOUT = 5.0
# Between the starts of two resync attempts, even when each fails at once (a modem that
# answers every marker with a second final result).
RESYNC_FLOOR = 1.0
# After the marker's final result, this long with no answer line (URCs aside) proves that no
# duplicated or reordered answer follows it. Resyncs are rare: the cost is small.
RESYNC_QUIET = 0.2
# Marker attempts before the port is declared hung.
RESYNC_ATTEMPTS = 3


class SyncState(enum.Enum):
    SYNCHRONISED = "synchronised"
    UNSYNCHRONISED = "unsynchronised"  # a marker is due (after the floor)
    MARKER = "marker"  # a marker is out: waiting for its information line, then its final
    QUIET = "quiet"  # the marker's answer came: waiting out the quiet period
    HUNG = "hung"  # out of attempts; terminal


@dataclass(frozen=True, slots=True)
class SendMarker:
    """Write ``command`` now (the parser is not told: every line it yields comes here)."""

    command: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until`` (or before the next event is fed)."""

    until: float


@dataclass(frozen=True, slots=True)
class Synchronised:
    """The next command's answer will be its own."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Hung:
    """Sync could not be proven in the allowed attempts: close the port."""

    attempts: int


Step = SendMarker | Wait | Synchronised | Hung


class AtSync:
    """The sync state of one port; see the module docstring.

    A fresh instance is UNSYNCHRONISED (a reopened port may still receive the answers to the
    previous session's commands) unless ``synchronised`` is given.
    """

    __slots__ = (
        "_attempts",
        "_deadline",
        "_floor",
        "_marker",
        "_marker_timeout",
        "_max_attempts",
        "_next_at",
        "_quiet",
        "_quiet_until",
        "_seen_info",
        "_suspects",
        "discarded",
        "epoch",
        "state",
    )

    def __init__(
        self,
        *,
        synchronised: bool = False,
        attempts: int = RESYNC_ATTEMPTS,
        floor: float = RESYNC_FLOOR,
        quiet: float = RESYNC_QUIET,
        marker_timeout: float = MARKER_TIMEOUT,
        suspects: Iterable[str] = (),
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be positive, got {attempts!r}")
        self.state = SyncState.SYNCHRONISED if synchronised else SyncState.UNSYNCHRONISED
        #: Incremented on each loss of sync; answers from different epochs are unrelated.
        self.epoch = 0
        #: Lines and final results thrown away while resynchronising.
        self.discarded = 0
        self._max_attempts = attempts
        self._floor = floor
        self._quiet = quiet
        self._marker_timeout = marker_timeout
        self._attempts = 0
        self._next_at = float("-inf")
        self._deadline = 0.0
        self._quiet_until = 0.0
        self._marker: tuple[str, str] | None = None
        self._seen_info = False
        # Commands whose answers may still arrive (upper case): never used as markers. A
        # reopened port starts with those of the session before it (its ``outstanding``).
        self._suspects: set[str] = {c.strip().upper() for c in suspects}

    @property
    def synchronised(self) -> bool:
        return self.state is SyncState.SYNCHRONISED

    @property
    def resyncing(self) -> bool:
        """A marker is out: every event belongs to :meth:`feed`."""
        return self.state is SyncState.MARKER or self.state is SyncState.QUIET

    @property
    def outstanding(self) -> frozenset[str]:
        """Commands (markers included) whose answers may still arrive: the next session on
        this port must not take one of them for its own marker's."""
        out = set(self._suspects)
        if self.state is SyncState.MARKER and self._marker is not None:
            out.add(self._marker[0])
        return frozenset(out)

    @property
    def marker(self) -> str | None:
        """The marker command out, if any."""
        return self._marker[0] if self._marker is not None and self.resyncing else None

    def lost(self, command: str | None, now: float) -> None:
        """``command``'s answer may still come (it timed out, was cancelled, or a final result
        came with nothing in flight: ``command`` None). Sync is lost; the epoch moves on."""
        if command is not None:
            self._suspects.add(command.strip().upper())
        if self.state is SyncState.HUNG:
            return
        if self.state is SyncState.SYNCHRONISED:
            self.epoch += 1
            self._attempts = 0
        elif self.resyncing and self._marker is not None:
            self._suspects.add(self._marker[0])
        self.state = SyncState.UNSYNCHRONISED
        self._marker = None

    def poll(self, now: float) -> Step:
        """What to do at ``now``; call again after a Wait ends or an event was fed."""
        state = self.state
        if state is SyncState.MARKER and now >= self._deadline:
            assert self._marker is not None
            # Its answer may still come: it must not be the next marker.
            self._suspects.add(self._marker[0])
            self.state = state = SyncState.UNSYNCHRONISED
        if state is SyncState.SYNCHRONISED:
            return Synchronised(self.epoch)
        if state is SyncState.MARKER:
            return Wait(self._deadline)
        if state is SyncState.QUIET:
            if now < self._quiet_until:
                return Wait(self._quiet_until)
            self.state = SyncState.SYNCHRONISED
            self._attempts = 0
            self._suspects.clear()
            self._marker = None
            return Synchronised(self.epoch)
        if state is SyncState.UNSYNCHRONISED:
            marker = next((m for m in MARKERS if m[0] not in self._suspects), None)
            if self._attempts >= self._max_attempts or marker is None:
                self.state = SyncState.HUNG
                return Hung(self._attempts)
            if now < self._next_at:
                return Wait(self._next_at)
            self._attempts += 1
            self._next_at = now + self._floor
            self._deadline = now + self._marker_timeout
            self._marker = marker
            self._seen_info = False
            self.state = SyncState.MARKER
            return SendMarker(marker[0])
        return Hung(self._attempts)

    def feed(self, event: Event, now: float) -> bool:
        """An event the parser produced while a marker is out (the parser has no command in
        flight, so answer lines come as Urc). True: consumed (discarded or the marker's own
        answer); False: a real URC or Garbage, for the caller to handle as usual."""
        if not self.resyncing or isinstance(event, Garbage):
            return False
        if isinstance(event, Urc):
            line = event.line
            if event.name in URC_NAMES and parse_final(line) is None:
                return False
        elif isinstance(event, Info | Final | Echo):
            line = event.line
        else:
            assert isinstance(event, Prompt)
            self.discarded += 1
            return True
        self._line(line, now)
        return True

    def _line(self, line: str, now: float) -> None:
        marker = self._marker
        assert marker is not None
        if self.state is SyncState.QUIET:
            # Something answered after the marker's final: a duplicated or reordered answer.
            # Prove sync again, with another marker (this one's answer may come twice).
            self.discarded += 1
            self._suspects.add(marker[0])
            self.state = SyncState.UNSYNCHRONISED
            self._marker = None
            return
        final = parse_final(line)
        if final is None:
            if split_name(line)[0] == marker[1]:
                self._seen_info = True
                return
            self._seen_info = False
            self.discarded += 1
            return
        if self._seen_info and final.ok:
            self.state = SyncState.QUIET
            self._quiet_until = now + self._quiet
            return
        self._seen_info = False
        self.discarded += 1
