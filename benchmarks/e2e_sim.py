"""One simulator process of the end-to-end benchmark (driven by ``benchmarks.e2e``).

    python -m benchmarks.e2e_sim --ports N --dir DIR --seed S --log FILE [--tag P]

Serves ``N`` simulated modems (:class:`muxd_sim.modem.ModemSimulator`, seed ``S`` so that
several processes present distinct SIMs) and injects SMS when told to, so the harness can
split the ports and the load across processes and keep their CPU out of the daemon's.

With ``--alias-dir D --offset O`` it also links ``D/port<O+i>`` to port ``i``'s pty, so the
ports of all simulator processes share one directory with unique names (muxd uses the name as
the port id). Protocol: prints ``ready FAULTY`` once every pty exists (``FAULTY``: the
comma-separated indices of the ports given ``--faults``, ``-`` for none). Reads commands on
stdin, one per line:

* ``load RATE DURATION START``: from the wall-clock time ``START`` (UNIX seconds), inject
  ``RATE`` SMS/s over this process's ports (seeded random port per SMS) for ``DURATION``
  seconds, paced like ``ModemSimulator.run_load`` (the k-th SMS is due at ``start + k/RATE``,
  so lateness never accumulates; the step's SMS are drawn and encoded when the command
  arrives, before ``START``, so that encoding costs the generator nothing while it injects);
  then print ``done INJECTED MAX_LATE_MS COMMANDS`` (how far
  behind its due time the latest SMS went out: the generator's own limit; and the AT commands
  the host sent meanwhile, by verb, as compact JSON).
* ``quit``: close the ptys and exit.

Texts are the simulator's load templates (GSM 7-bit, UCS-2 Cyrillic, an emoji) with a code
unique per process and SMS (``<tag><k:07d>``), so every SMS of a run is distinguishable and a
delivery matches exactly one ground-truth line. The ground truth is the simulator's own log:
one JSON line per injected SMS with ``t`` = when its ``+CMTI`` was written.

Faults: ``--faults SPEC`` (:func:`muxd_sim.modem_faults.parse_fault_spec`) and ``--fault-share
F`` are given to the :class:`ModemSimulator` as ``muxd simulate`` gives them: a seeded share of
the ports gets the I/O faults from the start and the plan's hangs, vanishings and SIM swaps,
which keep firing until ``quit``. ``--events FILE`` appends one JSON line per time-based fault
event: ``{"t", "port" (the alias name), "event" (mute, unmute, vanish, reappear, sim-removed,
sim-inserted, late-answer, cnma-timeout, network-retry), "number", "iccid"}``, the SIM's after
the event. The SMS faults (``reused_refs``, ``bad_scts``, ``absurd_scts``, ``routed``) act in
``ModemSimulator.inject`` and are marked on the ground-truth lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from muxd.pdu import EncodedPdu
from muxd_sim.modem import (
    LOAD_SENDERS,
    LOAD_TEMPLATES,
    NETWORK_TZ,
    ModemSimulator,
    SimPort,
    encode_ahead,
    parse_fault_spec,
)
from muxd_sim.modem_state import DEFAULT_CAPACITY

YIELD_EVERY = 64  # yield to the loop at least this often while catching up (as run_load)
_VERB = re.compile(r"AT[+^$%#]?[A-Z]*|[A-Z0-9+^]*")  # AT+CMGR=3 -> AT+CMGR
FAULT_EVENTS = frozenset(
    {
        *("mute", "unmute", "vanish", "reappear", "sim-removed", "sim-inserted"),
        *("late-answer", "cnma-timeout", "network-retry"),
    }
)


class Planned(NamedTuple):
    port: int
    sender: str
    text: str
    encoded: EncodedPdu | None  # None: several parts, encoded at injection


def plan(
    sim: ModemSimulator, rng: random.Random, tag: str, first: int, rate: float, duration: float,
    at: float,
) -> tuple[list[Planned], datetime]:  # fmt: skip
    """The step's SMS, in order, encoded ahead (the generator's CPU stays off the clock)."""
    scts = datetime.fromtimestamp(at, NETWORK_TZ).replace(microsecond=0)
    out = []
    for k in range(math.ceil(rate * duration - 1e-9)):
        seq = first + k
        text = LOAD_TEMPLATES[seq % len(LOAD_TEMPLATES)].format(code=f"{tag}{seq:07d}")
        sender = LOAD_SENDERS[seq % len(LOAD_SENDERS)]
        port = rng.randrange(len(sim.ports))
        out.append(Planned(port, sender, text, encode_ahead(sender, text, scts)))
    return out, scts


async def inject(
    sim: ModemSimulator, planned: list[Planned], scts: datetime, rate: float
) -> tuple[int, float]:
    """Inject ``planned`` at ``rate`` from now; return (count, max lateness in s)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    late = 0.0
    for k, sms in enumerate(planned):
        delay = start + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
            if k % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        sim.inject(sms.port, sms.sender, sms.text, scts=scts, encoded=sms.encoded)
    return len(planned), late


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    rng = random.Random(f"muxd-e2e-load:{args.seed}")
    commands: Counter[str] = Counter()

    def count(port: SimPort, line: str) -> None:
        verb = _VERB.match(line.upper())
        commands[(verb.group(0) if verb else "") or "?"] += 1

    with contextlib.ExitStack() as stack:
        # blocking, like the simulator's own ground-truth log: once at start, small writes
        events = stack.enter_context(open(args.events, "a")) if args.events else None  # noqa: ASYNC230

        def on_event(port: SimPort, event: str) -> None:
            if events is not None and event in FAULT_EVENTS:
                name = f"port{args.offset + port.index:03d}"
                line = {"t": time.time(), "port": name, "event": event}
                line.update(number=port.number, iccid=port.iccid)
                events.write(json.dumps(line) + "\n")
                events.flush()

        async with ModemSimulator(
            args.ports,
            Path(args.dir),
            log_path=Path(args.log),
            seed=args.seed,
            capacity=args.capacity,
            faults=parse_fault_spec(args.faults) if args.faults else None,
            fault_share=args.fault_share,
            on_command=count,
            on_event=on_event,
        ) as sim:
            aliases = []
            if args.alias_dir:
                # One flat namespace for the daemon: port names (muxd's port_id) stay unique
                # across simulator processes. With faults the alias points at the simulator's
                # own symlink, which follows a vanished port to its new pty (and dangles while
                # it is gone); without, straight at the pty.
                for port in sim.ports:
                    alias = Path(args.alias_dir) / f"port{args.offset + port.index:03d}"
                    alias.unlink(missing_ok=True)
                    alias.symlink_to(port.path.absolute() if args.faults else port.tty_name)
                    aliases.append(alias)
            for alias in aliases:
                stack.callback(alias.unlink, missing_ok=True)
            print(f"ready {','.join(map(str, sim.faulty)) or '-'}", flush=True)
            await commands_loop(sim, reader, rng, commands, args)


async def commands_loop(
    sim: ModemSimulator,
    reader: asyncio.StreamReader,
    rng: random.Random,
    commands: Counter[str],
    args: argparse.Namespace,
) -> None:
    """Serve ``load`` and ``quit`` (see the module docstring) until ``quit`` or EOF."""
    sent = 0
    while line := (await reader.readline()).decode().split():
        if line[0] == "quit":
            break
        if line[0] != "load" or len(line) != 4:
            print(f"error unknown command {' '.join(line)!r}", flush=True)
            continue
        rate, duration, at = float(line[1]), float(line[2]), float(line[3])
        planned, scts = plan(sim, rng, args.tag, sent, rate, duration, at)
        wait = at - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        commands.clear()
        injected, late = await inject(sim, planned, scts, rate)
        sent += injected
        by_verb = json.dumps(dict(commands), separators=(",", ":"))
        print(f"done {injected} {late * 1000:.1f} {by_verb}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", required=True, help="ground-truth JSON-lines log")
    parser.add_argument("--tag", default="0", help="prefix of this process's SMS codes")
    parser.add_argument("--alias-dir", help="also link portNNN here, numbered from --offset")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, help="SMS per SIM")
    parser.add_argument("--faults", help="fault spec, as muxd simulate --faults")
    parser.add_argument("--fault-share", type=float, default=1.0, help="share of faulty ports")
    parser.add_argument("--events", help="append time-based fault events here (JSON lines)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.no_uvloop:
        asyncio.run(serve(args))
    else:
        import uvloop

        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
