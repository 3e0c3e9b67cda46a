"""Injection ceiling of the modem simulator: ``python -m muxd_sim.modem_bench``.

Starts ``--ports`` simulated modems in this process (nobody reading them, as in a
simulator process whose host has not attached yet) and either injects ``--count``
SMS as fast as the loop allows (the ceiling) or at ``--rate`` SMS/s for
``--duration`` seconds (reporting the CPU share that rate costs). Prints one line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from muxd_sim.modem import ModemSimulator
from muxd_sim.modem_faults import parse_fault_spec
from muxd_sim.modem_flavours import parse_flavours

UNBOUNDED_RATE = 1e9


async def measure(
    *,
    ports: int,
    count: int,
    rate: float,
    duration: float,
    flavours: tuple[str, ...],
    faults: str,
    fault_share: float,
    log: bool,
) -> str:
    """Run one measurement; return the result line."""
    with tempfile.TemporaryDirectory(prefix="muxd-bench-") as tmp:
        workdir = Path(tmp)
        async with ModemSimulator(
            ports,
            workdir / "ports",
            capacity=255,
            flavours=flavours,
            faults=parse_fault_spec(faults) if faults else None,
            fault_share=fault_share,
            log_path=workdir / "truth.jsonl" if log else None,
        ) as sim:
            loop = asyncio.get_running_loop()
            start, cpu = loop.time(), time.process_time()
            if rate > 0:
                injected = await sim.run_load(rate, duration=duration)
            else:
                injected = await sim.run_load(UNBOUNDED_RATE, count=count)
            elapsed = loop.time() - start
            cpu = time.process_time() - cpu
            refused = sim.refused
    shared = f"{faults} on {fault_share:.0%}" if faults else "none"
    return (
        f"{ports} ports ({','.join(flavours)}; faults {shared}),"
        f" log {'on' if log else 'off'}: {injected} SMS in {elapsed:.2f} s ="
        f" {injected / elapsed:,.0f} SMS/s, CPU {cpu / elapsed:.0%}, refused {refused}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m muxd_sim.modem_bench")
    parser.add_argument("--ports", type=int, default=512)
    parser.add_argument("--count", type=int, default=20_000, help="SMS for the ceiling run")
    parser.add_argument("--rate", type=float, default=0.0, help="sustained SMS/s (0: ceiling)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds at --rate")
    parser.add_argument("--flavour", default="generic", help="e.g. quectel,huawei or all")
    parser.add_argument("--faults", default="", help='e.g. "noise=0.05,split_reads"')
    parser.add_argument("--fault-share", type=float, default=1.0)
    parser.add_argument("--no-log", action="store_true", help="no ground-truth log")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    coro = measure(
        ports=args.ports,
        count=args.count,
        rate=args.rate,
        duration=args.duration,
        flavours=parse_flavours(args.flavour),
        faults=args.faults,
        fault_share=args.fault_share,
        log=not args.no_log,
    )
    if args.uvloop:
        import uvloop

        print(uvloop.run(coro))
    else:
        print(asyncio.run(coro))


if __name__ == "__main__":
    main()
