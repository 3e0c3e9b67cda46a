"""Fault knobs of the simulated modems: per-port :class:`Faults` and a start-up :class:`FaultPlan`.

Every knob is off by default. A port's faults live in ``sim.ports[i].faults`` (the same
object as ``sim.ports[i].state.faults``) and may be changed at any time::

    sim.ports[3].faults.noise = 0.05
    sim.ports[3].faults.split_reads = True

Interpreter-level knobs (``mute``, ``drop_urcs``, ``storage_full``, ``cnum_empty``) are
applied by :class:`~muxd_sim.modem_state.SimModemState`; I/O-level ones
(``urc_mid_response``, ``mid_pdu``, ``split_reads``, ``delay_s``, ``noise``) by the pty
writer in :mod:`muxd_sim.modem_pty`; ``parts_order`` and ``ref_bits`` are the defaults of
``ModemSimulator.inject`` on that port. ``late_p`` (answers after the host's deadline,
later commands queued behind) is applied by the pty reader; ``reused_refs``,
``bad_scts``, ``absurd_scts`` change what ``inject`` stores; ``routed`` and
``routed_nocsms`` make ``inject`` hand the SMS to the routed delivery of
:mod:`muxd_sim.modem_routed` (``+CMT`` instead of storage). Time-based events (a hang, a
vanishing port, a SIM swap) are methods of the simulator (``mute_for``, ``vanish``,
``swap_sim``); a :class:`FaultPlan` can also schedule them at random (seeded) intervals.

:func:`parse_fault_spec` reads the CLI form, e.g.
``"noise=0.05,split_reads,delay=0.2,urc_mid_response,hang=30:5,vanish=120:2"``;
:data:`FAULT_KEYS` lists every key (the CLI help and the parser's errors show it).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, fields

__all__ = [
    "FAULT_KEYS",
    "PARTS_ORDERS",
    "FaultPlan",
    "Faults",
    "add_noise",
    "parse_fault_spec",
    "urc_spots",
]

PARTS_ORDERS = ("in", "reverse", "shuffle")
REF_BITS = (8, 16)
DEFAULT_NOISE = 0.05  # probability used by a bare ``noise`` in a fault spec
# probability per injected SMS used by a bare ``reused_refs`` / ``bad_scts`` / ``absurd_scts``
DEFAULT_SMS_FAULT_P = 0.05
# seconds the modem waits for AT+CNMA after a routed +CMT (with AT+CSMS=1) before it
# reports a failure to the network (24.011's TR2M is 12-20 s; the network then retries)
CNMA_TIMEOUT_S = 15.0

#: every key :func:`parse_fault_spec` accepts, in the form it takes
FAULT_KEYS = (
    "noise[=P]",
    "split_reads[=GAP_S]",
    "delay=S",
    "late=P:MIN-MAX",
    "urc_mid_response",
    "mid_pdu",
    "mute",
    "drop_urcs",
    "storage_full",
    "cnum_empty",
    "parts=in|reverse|shuffle",
    "ref16",
    "ref_bits=8|16",
    "reused_refs[=P]",
    "bad_scts[=P]",
    "absurd_scts[=P]",
    "routed[=P]",
    "routed_nocsms[=P]",
    "cnma=S",
    "hang=EVERY:SECONDS",
    "vanish=EVERY:SECONDS",
    "swap=EVERY",
)

_LINE_RE = re.compile(rb"[^\r\n]+")
_CRLF_RE = re.compile(rb"\r\n")
_PDU_HEADERS = (b"+CMGR:", b"+CMGL:")
# noise: bytes that are neither printable ASCII nor CR/LF, and garbage lines that look
# like nothing a modem would say (no leading +, ^, #, no result code)
_BINARY = bytes([*range(0x00, 0x0A), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x80, 0x100)])
_GARBAGE = (b"~~~~", b"\x1b[2J", b"@@@ 1f 2e 3d @@@", b"%%%%%%%%", b"<<~>>")


@dataclass(slots=True)
class Faults:
    """What is wrong with one simulated modem right now (all off by default).

    * ``urc_mid_response``: a URC (``+CMTI`` of a message really stored, or the flavour's
      idle URC such as ``+CREG: 1`` / ``^RSSI:n``) is put between two whole lines of every
      response with at least two information lines (a ``+CMGL`` listing, ``ATI``…);
    * ``mid_pdu``: URCs and noise may also land between a ``+CMGR:``/``+CMGL:`` header
      and its PDU line (off: those pairs stay together);
    * ``split_reads``: every output is written in random 1–7 byte pieces, one
      ``os.write`` per event-loop iteration, or every ``split_gap_s`` seconds when
      that is > 0 (pieces written within microseconds may still be merged by the
      kernel before a host in another process reads them);
    * ``delay_s``: command responses are written this many seconds late (the echo is
      not delayed; output order is always kept);
    * ``noise``: probability, at every line boundary of the output, of a junk line
      (NULs, 0xFF, random binary or printable garbage, always followed by CRLF, so it
      never corrupts a real line);
    * ``mute``: a hung modem: input is swallowed, nothing is answered, no URC is sent;
    * ``drop_urcs``: ``+CMTI`` is never sent (storage is the only truth);
    * ``storage_full``: the receive memory counts as full: new SMS are refused (as when
      the capacity is reached) and the flavour's memory-full URC is sent once;
    * ``cnum_empty``: ``AT+CNUM`` answers a bare ``OK`` even if the SIM has a number;
    * ``parts_order`` (``in``/``reverse``/``shuffle``) and ``ref_bits`` (8/16): how
      ``inject`` stores multipart SMS on this port unless told otherwise;
    * ``late_p``, ``late_min_s``, ``late_max_s``: with probability ``late_p`` per command
      line, its answer is written ``late_min_s``..``late_max_s`` seconds after it (the
      echo at once); every line the host writes meanwhile waits, unechoed and unrun, and
      is run and answered in order afterwards, as on a busy module. URCs keep flowing;
    * ``reused_refs``: probability per injected SMS that it becomes two 2-part messages
      from the same sender with the same concatenation reference, stored A1, B1, B2, A2
      (see :mod:`muxd_sim.modem_smsfaults` for their time stamps);
    * ``bad_scts`` / ``absurd_scts``: probability per injected SMS of an invalid SMSC time
      stamp (month 13, hour 25, a non-BCD zone nibble) / a valid but absurd one (year 99
      read as 2099, zone -17:30); the text is intact;
    * ``routed``: probability per injected SMS that it is routed to the host as
      ``+CMT: ,LEN`` + PDU whatever ``AT+CNMI``'s mt says (class 0 style; without it
      only mt=2 routes); ``routed_nocsms``: the same, and any value > 0 makes the modem
      refuse ``AT+CSMS=1``, so it acknowledges every routed SMS itself;
    * ``cnma_timeout_s``: how long a routed SMS waits for ``AT+CNMA`` (with
      ``AT+CSMS=1``) before the modem gives up, turns routing off and the network
      delivers it again later.
    """

    urc_mid_response: bool = False
    mid_pdu: bool = False
    split_reads: bool = False
    split_gap_s: float = 0.0
    delay_s: float = 0.0
    noise: float = 0.0
    mute: bool = False
    drop_urcs: bool = False
    storage_full: bool = False
    cnum_empty: bool = False
    parts_order: str = "in"
    ref_bits: int = 8
    late_p: float = 0.0
    late_min_s: float = 0.0
    late_max_s: float = 0.0
    reused_refs: float = 0.0
    bad_scts: float = 0.0
    absurd_scts: float = 0.0
    routed: float = 0.0
    routed_nocsms: float = 0.0
    cnma_timeout_s: float = CNMA_TIMEOUT_S

    @property
    def shapes_output(self) -> bool:
        """True when the pty writer has to transform or pace this port's output."""
        return self.split_reads or self.delay_s > 0 or self.noise > 0 or self.urc_mid_response

    def validate(self) -> None:
        """Raise ValueError for out-of-range values."""
        for name in ("delay_s", "split_gap_s", "late_min_s", "late_max_s", "cnma_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in (
            "noise",
            "late_p",
            "reused_refs",
            "bad_scts",
            "absurd_scts",
            "routed",
            "routed_nocsms",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability within [0, 1], got {value}")
        if self.late_min_s > self.late_max_s:
            raise ValueError(f"late: {self.late_min_s} > {self.late_max_s} (late=P:MIN-MAX)")
        if self.parts_order not in PARTS_ORDERS:
            raise ValueError(f"parts_order must be one of {PARTS_ORDERS}, got {self.parts_order!r}")
        if self.ref_bits not in REF_BITS:
            raise ValueError(f"ref_bits must be 8 or 16, got {self.ref_bits}")


@dataclass(slots=True)
class FaultPlan(Faults):
    """Faults given to a share of ports at start, plus scheduled events.

    The :class:`Faults` fields are copied to every chosen port. The schedule fields
    fire per chosen port at exponentially distributed (seeded) intervals with the
    given mean, 0 = never:

    * ``hang_every`` / ``hang_s``: the modem stops answering for ``hang_s`` seconds;
    * ``vanish_every`` / ``vanish_s``: the port disappears for ``vanish_s`` seconds and
      comes back on a new pty behind the same symlink;
    * ``swap_every``: the SIM is swapped for a new one.
    """

    hang_every: float = 0.0
    hang_s: float = 0.0
    vanish_every: float = 0.0
    vanish_s: float = 0.0
    swap_every: float = 0.0

    def port_faults(self) -> Faults:
        """A fresh :class:`Faults` with this plan's knobs (one per chosen port)."""
        return Faults(**{f.name: getattr(self, f.name) for f in fields(Faults)})

    @property
    def scheduled(self) -> bool:
        """True when the plan schedules hangs, vanishings or SIM swaps."""
        return self.hang_every > 0 or self.vanish_every > 0 or self.swap_every > 0

    def validate(self) -> None:
        Faults.validate(self)
        for name in ("hang_every", "hang_s", "vanish_every", "vanish_s", "swap_every"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.hang_every > 0 and self.hang_s <= 0:
            raise ValueError("hang needs a duration: hang=EVERY:SECONDS")
        if self.vanish_every > 0 and self.vanish_s <= 0:
            raise ValueError("vanish needs a duration: vanish=EVERY:SECONDS")


_FLAGS = (
    "urc_mid_response",
    "mid_pdu",
    "mute",
    "drop_urcs",
    "storage_full",
    "cnum_empty",
)
_SMS_FAULTS = ("reused_refs", "bad_scts", "absurd_scts")  # key[=P], bare: DEFAULT_SMS_FAULT_P
_ROUTING_FAULTS = ("routed", "routed_nocsms")  # key[=P], bare: every SMS


def _number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"fault {key}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"fault {key}: {raw!r} must be a finite number >= 0")
    return value


def _period(key: str, raw: str, *, duration: bool) -> tuple[float, float]:
    every, sep, length = raw.partition(":")
    if duration != bool(sep):
        form = f"{key}=EVERY:SECONDS" if duration else f"{key}=EVERY"
        raise ValueError(f"fault {key}: expected {form}, got {raw!r}")
    return _number(key, every), _number(key, length) if sep else 0.0


def _late(raw: str) -> tuple[float, float, float]:
    share, sep, span = raw.partition(":")
    low, dash, high = span.partition("-")
    if not sep or not dash:
        raise ValueError(f"fault late: expected late=P:MIN-MAX, got {raw!r}")
    return _number("late", share), _number("late", low), _number("late", high)


def parse_fault_spec(text: str) -> FaultPlan:
    """Parse ``"noise=0.05,split_reads,delay=0.2,urc_mid_response"`` into a :class:`FaultPlan`.

    Keys: ``urc_mid_response``, ``mid_pdu``, ``split_reads[=GAP_S]``, ``delay=S``,
    ``noise[=P]`` (bare: 0.05), ``mute``, ``drop_urcs``, ``storage_full``,
    ``cnum_empty``, ``parts=in|reverse|shuffle``, ``ref16`` (or ``ref_bits=8|16``),
    ``late=P:MIN-MAX``, ``reused_refs[=P]``, ``bad_scts[=P]``, ``absurd_scts[=P]``
    (bare: 0.05), ``routed[=P]``, ``routed_nocsms[=P]`` (bare: 1, every SMS), ``cnma=S``,
    ``hang=EVERY:SECONDS``, ``vanish=EVERY:SECONDS``, ``swap=EVERY`` (:data:`FAULT_KEYS`).
    Raises ValueError naming the offending item (an unknown key: listing the known ones).
    """
    plan = FaultPlan()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if key in _FLAGS:
            if sep:
                raise ValueError(f"fault {key} takes no value, got {item!r}")
            setattr(plan, key, True)
        elif key == "split_reads":
            plan.split_reads = True
            plan.split_gap_s = _number(key, raw) if sep else 0.0
        elif key == "ref16" and not sep:
            plan.ref_bits = 16
        elif key in ("delay", "delay_s") and sep:
            plan.delay_s = _number(key, raw)
        elif key == "noise":
            plan.noise = _number(key, raw) if sep else DEFAULT_NOISE
        elif key in ("parts", "parts_order") and sep:
            plan.parts_order = raw.lower()
        elif key == "ref_bits" and sep:
            plan.ref_bits = int(_number(key, raw))
        elif key == "hang" and sep:
            plan.hang_every, plan.hang_s = _period(key, raw, duration=True)
        elif key == "vanish" and sep:
            plan.vanish_every, plan.vanish_s = _period(key, raw, duration=True)
        elif key == "swap" and sep:
            plan.swap_every, _ = _period(key, raw, duration=False)
        elif key == "late" and sep:
            plan.late_p, plan.late_min_s, plan.late_max_s = _late(raw)
        elif key in _SMS_FAULTS:
            setattr(plan, key, _number(key, raw) if sep else DEFAULT_SMS_FAULT_P)
        elif key in _ROUTING_FAULTS:
            setattr(plan, key, _number(key, raw) if sep else 1.0)
        elif key in ("cnma", "cnma_timeout_s") and sep:
            plan.cnma_timeout_s = _number(key, raw)
        else:
            raise ValueError(
                f"unknown fault or missing value: {item!r} (known: {', '.join(FAULT_KEYS)})"
            )
    plan.validate()
    return plan


# ---------------------------------------------------------------- output shaping (sans-I/O)


def urc_spots(data: bytes, *, mid_pdu: bool) -> list[int]:
    """Offsets between whole lines of a response with >= 2 information lines.

    Right after a line's CRLF, never after the final result code; not between a
    ``+CMGR:``/``+CMGL:`` header and its PDU unless ``mid_pdu``.
    """
    lines = list(_LINE_RE.finditer(data))
    if len(lines) < 3:
        return []
    spots: list[int] = []
    for match in lines[:-1]:
        end = match.end()
        if data[end : end + 2] != b"\r\n":
            continue
        if not mid_pdu and match.group(0).startswith(_PDU_HEADERS):
            continue
        spots.append(end + 2)
    return spots


def _after_pdu_header(data: bytes, pos: int) -> bool:
    if pos < 2:
        return False
    start = data.rfind(b"\n", 0, pos - 2) + 1
    return data.startswith(_PDU_HEADERS, start)


def _junk(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        body = b"\x00" * rng.randint(1, 4)
    elif kind == 1:
        body = b"\xff" * rng.randint(1, 4)
    elif kind == 2:
        body = bytes(rng.choice(_BINARY) for _ in range(rng.randint(1, 8)))
    else:
        body = rng.choice(_GARBAGE)
    return body + b"\r\n"


def add_noise(rng: random.Random, data: bytes, probability: float, *, mid_pdu: bool) -> bytes:
    """Insert junk lines at line boundaries of ``data``, each with ``probability``."""
    out = bytearray()
    last = 0
    for pos in (0, *(match.end() for match in _CRLF_RE.finditer(data))):
        if rng.random() >= probability:
            continue
        if not mid_pdu and _after_pdu_header(data, pos):
            continue
        out += data[last:pos]
        out += _junk(rng)
        last = pos
    if not out:
        return data
    out += data[last:]
    return bytes(out)
