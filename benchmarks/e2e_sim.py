"""One simulator process of the end-to-end benchmark (driven by ``benchmarks.e2e``).

    python -m benchmarks.e2e_sim --ports N --dir DIR --seed S --log FILE [--tag P]

Serves ``N`` simulated modems (:class:`muxd.sim.modem.ModemSimulator`, seed ``S`` so that
several processes present distinct SIMs) and injects SMS when told to, so the harness can
split the ports and the load across processes and keep their CPU out of the daemon's.

With ``--alias-dir D --offset O`` it also links ``D/port<O+i>`` to port ``i``'s pty, so the
ports of all simulator processes share one directory with unique names (muxd uses the name as
the port id). Protocol: prints ``ready`` once every pty exists. Reads commands on stdin, one
per line:

* ``load RATE DURATION START``: from the wall-clock time ``START`` (UNIX seconds), inject
  ``RATE`` SMS/s over this process's ports (seeded random port per SMS) for ``DURATION``
  seconds, paced like ``ModemSimulator.run_load`` (the k-th SMS is due at ``start + k/RATE``,
  so lateness never accumulates); then print ``done INJECTED MAX_LATE_MS COMMANDS`` (how far
  behind its due time the latest SMS went out: the generator's own limit; and the AT commands
  the host sent meanwhile, by verb, as compact JSON).
* ``quit``: close the ptys and exit.

Texts are the simulator's load templates (GSM 7-bit, UCS-2 Cyrillic, an emoji) with a code
unique per process and SMS (``<tag><k:07d>``), so every SMS of a run is distinguishable and a
delivery matches exactly one ground-truth line. The ground truth is the simulator's own log:
one JSON line per injected SMS with ``t`` = when its ``+CMTI`` was written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from muxd.sim.modem import LOAD_SENDERS, LOAD_TEMPLATES, ModemSimulator, SimPort
from muxd.sim.modem_state import DEFAULT_CAPACITY

YIELD_EVERY = 64  # yield to the loop at least this often while catching up (as run_load)
_VERB = re.compile(r"AT[+^$%#]?[A-Z]*|[A-Z0-9+^]*")  # AT+CMGR=3 -> AT+CMGR


async def inject(
    sim: ModemSimulator, rng: random.Random, tag: str, first: int, rate: float, duration: float
) -> tuple[int, float]:
    """Inject at ``rate`` for ``duration`` s from now; return (count, max lateness in s)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n_ports = len(sim.ports)
    late = 0.0
    k = 0
    while True:
        due = start + k / rate
        if due >= start + duration:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
            if k % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        seq = first + k
        text = LOAD_TEMPLATES[seq % len(LOAD_TEMPLATES)].format(code=f"{tag}{seq:07d}")
        sim.inject(rng.randrange(n_ports), LOAD_SENDERS[seq % len(LOAD_SENDERS)], text)
        k += 1
    return k, late


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    rng = random.Random(f"muxd-e2e-load:{args.seed}")
    commands: Counter[str] = Counter()

    def count(port: SimPort, line: str) -> None:
        verb = _VERB.match(line.upper())
        commands[(verb.group(0) if verb else "") or "?"] += 1

    async with ModemSimulator(
        args.ports,
        Path(args.dir),
        log_path=Path(args.log),
        seed=args.seed,
        capacity=args.capacity,
        on_command=count,
    ) as sim:
        aliases = []
        if args.alias_dir:
            # One flat namespace for the daemon: port names (muxd's port_id) stay unique
            # across simulator processes.
            for port in sim.ports:
                alias = Path(args.alias_dir) / f"port{args.offset + port.index:03d}"
                alias.unlink(missing_ok=True)
                alias.symlink_to(port.tty_name)
                aliases.append(alias)
        print("ready", flush=True)
        sent = 0
        while line := (await reader.readline()).decode().split():
            if line[0] == "quit":
                break
            if line[0] != "load" or len(line) != 4:
                print(f"error unknown command {' '.join(line)!r}", flush=True)
                continue
            rate, duration, at = float(line[1]), float(line[2]), float(line[3])
            wait = at - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            commands.clear()
            injected, late = await inject(sim, rng, args.tag, sent, rate, duration)
            sent += injected
            by_verb = json.dumps(dict(commands), separators=(",", ":"))
            print(f"done {injected} {late * 1000:.1f} {by_verb}", flush=True)
        for alias in aliases:
            alias.unlink(missing_ok=True)


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
