"""``muxd probe PORT...``: what muxd sees on a modem port, before it is put into a config.

For each port: open it, run the same init muxd runs (echo off, vendor profile, PDU mode, the
three memories), identify the SIM (IMEI, ICCID, IMSI, own number and where it came from), read
signal and registration, the storage counts per memory (``AT+CPMS?``) and which ``AT+CNMI``
forms the modem accepts. Nothing is read from storage and nothing is deleted: probing a port
with SMS on it loses none.

Ports are probed one after another (a probe is a first-hour tool, not a hot path); a port that
fails is reported with its error and the others are still probed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from muxd.at import AtParseError, Urc, parse_cpms
from muxd.errors import ModemError
from muxd.modem.port import ModemPort
from muxd.modem.profiles import CNMI_FALLBACKS
from muxd.modem.session import ModemSession
from muxd.ports import PartRead, PortInfo
from muxd.serialio import SerialOpenError, open_port

LOGGER = logging.getLogger(__name__)

# The whole probe of one port (init with its SMS-ready retries, identity, health): a module
# still booting needs up to a minute before its SMS commands answer.
PROBE_TIMEOUT = 90.0
# Closing a serial port runs in a worker thread; it takes milliseconds unless the driver hangs.
CLOSE_TIMEOUT = 5.0


@dataclass
class ProbeResult:
    """What one port told us; ``error`` is set when the probe stopped early."""

    path: str
    info: PortInfo
    profile: str | None = None
    memories: list[str] = field(default_factory=list)
    storage: dict[str, tuple[int, int]] = field(default_factory=dict)  # mem -> (used, total)
    cnmi_ranges: str | None = None  # the answer to AT+CNMI=?
    cnmi_accepted: list[str] = field(default_factory=list)
    cnmi_refused: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def _storage_counts(session: ModemSession) -> dict[str, tuple[int, int]]:
    resp = await session.command("AT+CPMS?")
    out: dict[str, tuple[int, int]] = {}
    for line in resp.lines:
        try:
            usage = parse_cpms(line.line)
        except AtParseError:
            continue
        for mem in usage:
            if mem.mem is not None:
                out.setdefault(mem.mem, (mem.used, mem.total))
    return out


async def _cnmi_forms(session: ModemSession, result: ProbeResult) -> None:
    with contextlib.suppress(ModemError):
        ranges = (await session.command("AT+CNMI=?")).first("+CNMI")
        result.cnmi_ranges = ranges
    for form in CNMI_FALLBACKS:
        try:
            await session.command(form)
        except ModemError:
            result.cnmi_refused.append(form)
        else:
            result.cnmi_accepted.append(form)
    if result.cnmi_accepted:
        # Leave the modem as muxd would: the best form it accepts.
        with contextlib.suppress(ModemError):
            await session.command(result.cnmi_accepted[0])


async def _no_sink(_part: PartRead, /) -> NoReturn:
    raise AssertionError("a probe never reads SMS")  # pragma: no cover - never called


async def probe_port(
    path: str, *, baudrate: int = 115200, numbers: Mapping[str, str] | None = None
) -> ProbeResult:
    """Probe one port; never raises for what the port does (the error is in the result)."""
    info = PortInfo(name=path.rsplit("/", 1)[-1], path=path)
    result = ProbeResult(path=path, info=info)
    port: ModemPort | None = None

    def on_urc(urc: Urc) -> None:
        LOGGER.debug("%s: URC %s", path, urc.line)

    try:
        transport, protocol = await open_port(
            path, lambda: ModemSession(info.name, on_urc=on_urc), baudrate=baudrate
        )
    except SerialOpenError as exc:
        result.error = str(exc)
        return result
    assert isinstance(protocol, ModemSession)
    session = protocol
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await session.wait_connected()
            port = ModemPort(
                info,
                session,
                _no_sink,
                numbers=numbers or {},
                sweep_interval=3600.0,
                on_change=lambda _info: None,
            )
            await port.initialise()
            result.profile = port.profile.name
            result.memories = list(port.memories)
            await port.identify()
            await port.check_health()
            result.storage = await _storage_counts(session)
            await _cnmi_forms(session, result)
    except TimeoutError:
        result.error = f"no complete answer within {PROBE_TIMEOUT:.0f} s"
    except (ModemError, OSError) as exc:
        result.error = str(exc)
    finally:
        if not transport.is_closing():
            transport.abort()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(session.closed)
    return result


async def probe_ports(
    paths: Sequence[str], *, baudrate: int = 115200, numbers: Mapping[str, str] | None = None
) -> list[ProbeResult]:
    return [await probe_port(p, baudrate=baudrate, numbers=numbers) for p in paths]


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def render_table(results: Sequence[ProbeResult]) -> str:
    """One row per port: a fixed-width table for a terminal."""
    header = (
        "port",
        "profile",
        "imei",
        "iccid",
        "imsi",
        "number (source)",
        "dBm",
        "reg",
        "storage used/total",
        "cnmi",
    )
    rows: list[tuple[str, ...]] = [header]
    for r in results:
        i = r.info
        if not r.ok:
            rows.append((r.path, "FAILED", _cell(r.error), "", "", "", "", "", "", ""))
            continue
        storage = " ".join(f"{m} {u}/{t}" for m, (u, t) in sorted(r.storage.items()))
        number = f"{i.number} ({i.number_source})" if i.number else f"- ({i.number_source})"
        rows.append(
            (
                r.path,
                _cell(r.profile),
                _cell(i.imei),
                _cell(i.iccid),
                _cell(i.imsi),
                number,
                _cell(i.signal_dbm),
                "yes" if i.registered else "no",
                _cell(storage),
                r.cnmi_accepted[0].removeprefix("AT+CNMI=") if r.cnmi_accepted else "none",
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def render_snippet(results: Sequence[ProbeResult]) -> str:
    """A config snippet for the ports that answered, and numbers-file lines for unknown ones."""
    good = [r for r in results if r.ok]
    lines = ["# muxd probe: ports that answered", "[modems]", "ports = ["]
    lines += [f'    "{r.path}",' for r in good]
    lines.append("]")
    unknown = [r for r in good if r.info.number is None]
    if unknown:
        lines += [
            "",
            "# No own number found for these SIMs (AT+CNUM empty): add them to the CSV named",
            "# by numbers.file (header iccid,imsi,number), or configure a numbers.ussd query.",
        ]
        lines += [f"# {_cell(r.info.iccid)},{_cell(r.info.imsi)},+NUMBER" for r in unknown]
    for r in good:
        if not r.cnmi_accepted:
            lines.append(f"# {r.path}: no AT+CNMI form accepted: SMS are found by sweeps only")
    return "\n".join(lines)


def cmd_probe(args: argparse.Namespace) -> int:
    """``muxd probe PORT...``: exit 0 when every port answered, 1 otherwise."""
    from muxd.cli import _run_loop
    from muxd.config import load
    from muxd.errors import ConfigError
    from muxd.fleet import discover_each
    from muxd.numbers import load_numbers

    numbers: dict[str, str] = {}
    baudrate = args.baudrate
    patterns: list[str] = list(args.ports)
    if args.config:
        try:
            cfg = load(args.config)
            numbers = load_numbers(cfg.numbers.file)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        baudrate = args.baudrate or cfg.modems.baudrate
        patterns = patterns or list(cfg.modems.ports)
    if not patterns:
        print("muxd probe: name at least one PORT (or -c FILE)", file=sys.stderr)
        return 2
    paths: list[str] = []
    for pattern, found in discover_each(patterns).items():
        if not found:
            print(f"muxd probe: {pattern}: matches no port", file=sys.stderr)
        paths += [p for p in found if p not in paths]
    if not paths:
        return 1
    results: list[ProbeResult] = []

    async def run() -> None:
        results.extend(await probe_ports(paths, baudrate=baudrate or 115200, numbers=numbers))

    _run_loop(run())
    print(render_table(results))
    print()
    print(render_snippet(results))
    return 0 if all(r.ok for r in results) else 1


def add_probe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe",
        help="identify modems on ports and print a table and a config snippet",
        description="Open each port, run muxd's init, identify the SIM, read signal, "
        "registration, storage counts and the AT+CNMI forms it accepts; nothing is read from "
        "storage or deleted. Exit 1 when a port did not answer.",
    )
    p.add_argument("ports", nargs="*", metavar="PORT", help="device paths or globs")
    p.add_argument("-c", "--config", help="take ports, baud rate and numbers file from a config")
    p.add_argument("--baudrate", type=int, default=0, help="serial speed (default 115200)")
    p.set_defaults(func=cmd_probe)
