"""Crash campaign: ``python -m benchmarks.crash_campaign --rounds 100 [--ports 8 --rate 30
--seed S] [--keep DIR]``.

Runs the harness of ``tests/reliability`` outside pytest: pty modems and the Onlinesim stand-in
in this process, ``muxd run`` as a child process that is SIGKILLed at random moments (seeded)
and restarted while SMS keep arriving. Then it waits until everything is delivered, stops the
daemon with SIGTERM and prints rounds, injected, delivered, lost, duplicated (and whether each
duplicate has journal attempts >= 2), corrupted and the elapsed time. Exit status 1 when a
promise was broken. Run it from the repository root (it imports ``tests.reliability``).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.harness import DEFAULT_PORTS, DEFAULT_RATE, crash_campaign

PROGRESS_EVERY = 10  # rounds


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crash_campaign")
    parser.add_argument("--rounds", type=int, default=100, help="SIGKILLs (default 100)")
    parser.add_argument("--ports", type=int, default=DEFAULT_PORTS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="SMS per second")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one")
    parser.add_argument(
        "--keep", metavar="DIR", help="keep the work directory (log, journal) under DIR"
    )
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.ports < 1 or args.rate <= 0:
        parser.error("--rounds >= 0, --ports >= 1 and --rate > 0 please")
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    with tempfile.TemporaryDirectory(prefix="muxd-crash-") as tmp:
        if args.keep:
            workdir = Path(args.keep) / f"crash-{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        else:
            workdir = Path(tmp)
        result = asyncio.run(
            crash_campaign(
                workdir,
                rounds=args.rounds,
                seed=seed,
                ports=args.ports,
                rate=args.rate,
                progress=_say,
                progress_every=PROGRESS_EVERY,
            )
        )
    print(result.summary(), flush=True)
    if args.keep:
        print(f"work directory kept: {workdir}")
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
