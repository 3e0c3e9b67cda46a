"""Fleet start-up and idle cost at scale, muxd as its own process.

    python -m benchmarks.fleet_idle [--ports 512] [--idle 60]

Starts ``muxd simulate`` (its own process), the Onlinesim stand-in (its own process) and
``muxd run``; measures the time from muxd's start until every port is sellable (read from
muxd's /metrics), then the CPU of the muxd process alone over ``--idle`` seconds of idling
(user+sys from /proc), and its RSS.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.e2e_muxd import KEY, stand_in_argv
from muxd_sim.modem_ident import make_identity

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Bounded waits for external processes.
SIMULATOR_START_TIMEOUT = 60.0
SELLABLE_TIMEOUT = 180.0
POLL = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else None


def wait_for(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=512)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="muxd-bench-") as tmp:
        work = Path(tmp)
        dev = work / "dev"
        dev.mkdir()
        numbers = work / "numbers.csv"
        with numbers.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["iccid", "imsi", "number"])
            for i in range(args.ports):
                ident = make_identity(0, i)
                writer.writerow([ident.iccid, "", ident.number])
        stand_in, http = free_port(), free_port()
        cfg = work / "muxd.toml"
        cfg.write_text(
            f'state_dir = "{work / "state"}"\n'
            f'[modems]\nports = ["{dev}/port*"]\n'
            f'[numbers]\nfile = "{numbers}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{stand_in}"\napi_key = "{KEY}"\n'
            f'[http]\nlisten = "127.0.0.1:{http}"\n'
        )
        log = (work / "procs.log").open("wb")
        try:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "muxd",
                        "simulate",
                        "--ports",
                        str(args.ports),
                        "--dir",
                        str(dev),
                        "--log-level",
                        "warning",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
            procs.append(
                subprocess.Popen(
                    stand_in_argv(stand_in),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
            wait_for(
                "simulator ports",
                lambda: len(list(dev.glob("port*"))) >= args.ports,
                SIMULATOR_START_TIMEOUT,
            )
            started = time.monotonic()
            muxd = subprocess.Popen(
                [sys.executable, "-m", "muxd", "run", "-c", str(cfg), "--log-level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            procs.append(muxd)
            url = f"http://127.0.0.1:{http}/metrics"
            try:
                wait_for(
                    "all ports sellable",
                    lambda: (metric(url, "muxd_ports_sellable") or 0) >= args.ports,
                    SELLABLE_TIMEOUT,
                )
            except TimeoutError:
                print(f"sellable: {metric(url, 'muxd_ports_sellable')}", file=sys.stderr)
                log.flush()
                sys.stderr.write((work / "procs.log").read_text()[-3000:])
                raise
            to_sellable = time.monotonic() - started
            # Let the start-up burst (first publish, first health round) settle.
            time.sleep(5)
            cpu0, t0 = cpu_seconds(muxd.pid), time.monotonic()
            time.sleep(args.idle)
            cpu, wall = cpu_seconds(muxd.pid) - cpu0, time.monotonic() - t0
            result = {
                "ports": args.ports,
                "start_to_all_sellable_s": round(to_sellable, 2),
                "idle_s": round(wall, 1),
                "idle_cpu_s": round(cpu, 3),
                "idle_cpu_pct_of_one_core": round(100 * cpu / wall, 2),
                "rss_mb": round(rss_mb(muxd.pid), 1),
            }
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
    print(
        f"{result['ports']} ports: all sellable after {result['start_to_all_sellable_s']} s; "
        f"idle {result['idle_s']} s: {result['idle_cpu_pct_of_one_core']} % of one core, "
        f"RSS {result['rss_mb']} MB"
    )
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
