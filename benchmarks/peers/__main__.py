"""muxd, smstools3 and python-gsmmodem-new on the same fleet and load: one table.

    python -m benchmarks.peers [--ports 64] [--rate 50] [--duration 60] [--json OUT]

Runs ``benchmarks.e2e`` once per daemon (each with a fresh simulator, the same seeds, so the
same SIMs and the same SMS), prints the e2e summary of each, then one comparison table
(also as Markdown for the README) and writes ``{"runs": [...]}`` to ``--json``. 64 ports by
default: smsd's compile-time device limit. A daemon that cannot run here is reported with the
reason instead of figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmarks import e2e

DAEMONS = ("muxd", "smstools3", "gsmmodem")

COLUMNS = (
    ("daemon", "daemon"),
    ("ports", "ports"),
    ("SMS/s", "rate"),
    ("injected", "injected"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("dup", "duplicated"),
    ("corrupt", "corrupted"),
    ("p50 ms", "latency_ms.p50"),
    ("p99 ms", "latency_ms.p99"),
    ("max ms", "latency_ms.max"),
    ("CPU-s/1k SMS", "cpu_s_per_1000_sms"),
    ("idle CPU %", "idle_cpu_pct"),
    ("RSS MB", "rss_mb"),
    ("PSS MB", "pss_now_mb"),
    ("procs", "daemon_processes"),
)


def get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def table(runs: list[dict[str, Any]]) -> tuple[str, str]:
    rows = []
    for run in runs:
        if "error" in run:
            rows.append([run["daemon"], f"could not run: {run['error']}"])
        else:
            rows.append([cell(get(run, path)) for _, path in COLUMNS])
    heads = [head for head, _ in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows if len(r) > i)) for i, h in enumerate(heads)]
    text = [" ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
    for r in rows:
        text.append(" ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))
    md = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(text), "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--ports", type=int, default=64)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--daemons", default=",".join(DAEMONS))
    parser.add_argument("--json", help="write {'runs': [...]} here")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    for daemon in args.daemons.split(","):
        argv_e2e = [
            "--daemon",
            daemon,
            "--ports",
            str(args.ports),
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
            "--idle",
            str(args.idle),
            "--sims",
            "1",
        ]
        if args.no_plot:
            argv_e2e.append("--no-plot")
        print(f"\n=== {daemon} ===", file=sys.stderr, flush=True)
        try:
            result = e2e.run(e2e.parse_args(argv_e2e))
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is a result too
            traceback.print_exc()
            runs.append({"daemon": daemon, "ports": args.ports, "error": str(exc)})
            continue
        e2e.print_summary(result)
        runs.append(result)
    text, md = table(runs)
    print(f"\n{args.ports} ports, {args.rate:g} SMS/s for {args.duration:g} s:\n")
    print(text)
    print()
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
