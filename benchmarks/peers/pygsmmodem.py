"""python-gsmmodem-new as the daemon under test (``benchmarks/peers/gsmmodem_runner.py``).

The runner is a separate process (the library is imported there only): one ``GsmModem`` per pty,
each with its own reader thread; its callback writes one JSON line per SMS, which is this
target's delivery sink (``t`` = callback time). Install it with
``pip install -e '.[bench-peers-gsm]'``.
"""

from __future__ import annotations

import importlib.metadata
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.e2e_core import Fleet, JsonlTail, log_tail, stop_process
from muxd_sim.ledger import Delivery

RUNNER = Path(__file__).with_name("gsmmodem_runner.py")


class GsmmodemTarget:
    name = "gsmmodem"

    def __init__(self) -> None:
        try:
            version = importlib.metadata.version("python-gsmmodem-new")
        except importlib.metadata.PackageNotFoundError as exc:
            raise RuntimeError(
                "python-gsmmodem-new is not installed: pip install -e '.[bench-peers-gsm]'"
            ) from exc
        self.notes: dict[str, Any] = {
            "version": version,
            "mode": "PDU (smsTextMode=False), requestDelivery=False, one GsmModem per port",
            "sink": "the runner's smsReceivedCallbackFunc (JSON lines, callback time)",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.opened: int | None = None

    def start(self, fleet: Fleet, work: Path) -> None:
        root = work / "gsmmodem"
        root.mkdir(parents=True, exist_ok=True)
        ports = root / "ports.txt"
        ports.write_text("".join(f"{p.path}\n" for p in fleet.ports))
        self.number_of = {str(p.path): p.number for p in fleet.ports}
        self.n_ports = len(fleet.ports)
        self.record = JsonlTail(root / "received.jsonl")
        self.err_path = root / "runner.err"
        self.err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER), "--ports", str(ports), "--out", str(self.record.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
        )

    def ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.stdout is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"gsmmodem runner exited with {self.proc.returncode}")
        if self.opened is None and select.select([self.proc.stdout], [], [], 0)[0]:
            fields = self.proc.stdout.readline().decode().split()
            if fields and fields[0] == "ready":
                self.opened = int(fields[1])
                if self.opened < self.n_ports:
                    raise RuntimeError(f"gsmmodem opened {self.opened} of {self.n_ports} ports")
        return self.opened is not None

    def pids(self) -> list[int]:
        return [] if self.proc is None else [self.proc.pid]

    def other_pids(self) -> dict[str, list[int]]:
        return {}

    def counters(self) -> dict[str, float]:
        return {}

    def deliveries(self) -> list[Delivery]:
        return [
            Delivery(r["t"], self.number_of.get(r["port"], r["port"]), r["from"], r["message"])
            for r in self.record.read()
        ]

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 30)
        self.err.close()

    def log_tail(self) -> str:
        return log_tail(self.err_path)
