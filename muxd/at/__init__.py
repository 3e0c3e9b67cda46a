"""Sans-I/O AT protocol core: feed bytes from a modem, get events back.

Nothing here does I/O, reads a clock or logs; importing it must not import asyncio.
"""

from __future__ import annotations

from muxd.at.commands import (
    AtParseError,
    MemoryUsage,
    cmgd,
    cmgl,
    cmgr,
    cmgs,
    cnmi,
    cpms,
    csq_to_dbm,
    expected_prefix,
    parse_cmgl_header,
    parse_cmgr_header,
    parse_cmgs,
    parse_cmti,
    parse_cnum,
    parse_cops,
    parse_cpms,
    parse_creg,
    parse_csq,
)
from muxd.at.events import (
    Echo,
    Event,
    Final,
    FinalKind,
    Garbage,
    GarbageReason,
    Info,
    Prompt,
    Urc,
)
from muxd.at.parser import AtParser
from muxd.at.sync import (
    MARKERS,
    AtSync,
    Hung,
    SendMarker,
    Synchronised,
    SyncState,
    Wait,
)

__all__ = [
    "MARKERS",
    "AtParseError",
    "AtParser",
    "AtSync",
    "Echo",
    "Event",
    "Final",
    "FinalKind",
    "Garbage",
    "GarbageReason",
    "Hung",
    "Info",
    "MemoryUsage",
    "Prompt",
    "SendMarker",
    "SyncState",
    "Synchronised",
    "Urc",
    "Wait",
    "cmgd",
    "cmgl",
    "cmgr",
    "cmgs",
    "cnmi",
    "cpms",
    "csq_to_dbm",
    "expected_prefix",
    "parse_cmgl_header",
    "parse_cmgr_header",
    "parse_cmgs",
    "parse_cmti",
    "parse_cnum",
    "parse_cops",
    "parse_cpms",
    "parse_creg",
    "parse_csq",
]
