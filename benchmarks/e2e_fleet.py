"""The simulator processes of the end-to-end benchmark: start, line protocol, the fleet split.

Each is a ``benchmarks.e2e_sim`` process (see its docstring for the protocol); the harness
reads their stdout without blocking and waits for a word from all of them.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from benchmarks.e2e_core import Fleet, PortInfo
from muxd_sim.modem_ident import make_identity

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.25  # seconds between looks at the logs and /proc


class SimProc:
    """One ``benchmarks.e2e_sim`` process and its line protocol."""

    def __init__(
        self,
        index: int,
        ports: int,
        directory: Path,
        alias: tuple[Path, int],
        log: Path,
        err: IO[bytes],
        extra: list[str] | None = None,
    ):
        self.index = index
        self.log = log
        self.offset = alias[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.e2e_sim",
                "--ports",
                str(ports),
                "--dir",
                str(directory),
                "--seed",
                str(index),
                "--tag",
                str(index),
                "--log",
                str(log),
                "--alias-dir",
                str(alias[0]),
                "--offset",
                str(alias[1]),
                *(extra or []),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""

    def lines(self) -> list[str]:
        """Complete lines printed since the last call (never blocks)."""
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            chunk = b""
        if not chunk and self.proc.poll() is not None and not self.buffer:
            raise RuntimeError(f"simulator {self.index} exited with {self.proc.returncode}")
        self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        return [line.decode() for line in done]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def wait_lines(
    sims: list[SimProc], word: str, timeout: float, on_poll: Callable[[], None]
) -> dict[int, list[str]]:
    """Wait until every simulator printed a line starting with ``word``; return its fields."""
    deadline = time.monotonic() + timeout
    got: dict[int, list[str]] = {}
    while len(got) < len(sims):
        fds = [s.fd for s in sims if s.index not in got]
        select.select(fds, [], [], POLL)
        for sim in sims:
            for line in sim.lines():
                fields = line.split()
                if fields and fields[0] == "error":
                    raise RuntimeError(f"simulator {sim.index}: {line}")
                if fields and fields[0] == word:
                    got[sim.index] = fields[1:]
        on_poll()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"simulators: no {word!r} from {sorted(set(range(len(sims))) - set(got))}"
            )
    return got


def build_fleet(work: Path, ports: int, sims: int) -> tuple[Fleet, list[int]]:
    """Split ``ports`` over ``sims`` processes; write the numbers CSV for every port."""
    sizes = [ports // sims + (1 if k < ports % sims else 0) for k in range(sims)]
    infos: list[PortInfo] = []
    dev = work / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    for k, size in enumerate(sizes):
        for i in range(size):
            ident = make_identity(k, i)
            path = dev / f"port{len(infos):03d}"
            infos.append(PortInfo(path, ident.number, ident.iccid, ident.imsi, k))
    for attr in ("number", "iccid", "imsi"):
        values = [getattr(p, attr) for p in infos]
        if len(set(values)) != len(values):
            raise RuntimeError(f"simulator seeds give colliding {attr}s; change the split")
    numbers = work / "numbers.csv"
    with numbers.open("w") as fh:
        fh.write("iccid,imsi,number\n")
        for p in infos:
            fh.write(f"{p.iccid},,{p.number}\n")
    return Fleet(infos, dev, numbers), sizes
