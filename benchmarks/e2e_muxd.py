"""muxd as the target of the end-to-end benchmark: ``muxd run`` + ``muxd stand-in --record``.

:class:`MuxdTarget` starts the Onlinesim stand-in (the delivery sink, its own process) and
``muxd run`` against the simulated fleet, tells when muxd is ready (every port sellable and
listed, or with ``--faults`` every healthy port), and reads muxd's counters from ``/metrics``.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.e2e_core import (
    Fleet,
    JsonlTail,
    free_port,
    get_json,
    log_tail,
    stop_process,
)
from muxd_sim.ledger import Delivery

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def stand_in_argv(port: int, *, record: Path | None = None) -> list[str]:
    """``muxd stand-in`` on 127.0.0.1:``port`` with the benchmarks' key (recording if asked)."""
    argv = [sys.executable, "-m", "muxd", "stand-in", "--listen", f"127.0.0.1:{port}"]
    argv += ["--api-key", KEY, "--log-level", "warning"]
    return argv + (["--record", str(record)] if record is not None else [])


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text: str = resp.read().decode()
    except OSError:
        return None
    return text


def metric(url: str, name: str) -> float | None:
    text = scrape(url)
    if text is None:
        return None
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else None


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets)."""
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    )


# muxd's counters turned into per-SMS ratios for each load step (diagnostics).
MUXD_COUNTERS = {
    "journal_commits": "muxd_journal_commit_seconds_count",
    "journal_operations": "muxd_journal_operations_total",
    "upstream_requests": "muxd_upstream_requests_total",
}


class MuxdTarget:
    """``muxd run`` + ``muxd stand-in --record`` (its delivery sink)."""

    name = "muxd"

    def __init__(self, *, batch_delay: float | None, batch_max: int | None, log_level: str) -> None:
        # None: the key is left out of the config (muxd's default: adaptive batches of 100).
        self.batch_delay = batch_delay
        self.batch_max = batch_max
        self.log_level = log_level
        self.notes: dict[str, Any] = {
            "upstream.batch_delay": "default (adaptive)" if batch_delay is None else batch_delay,
            "upstream.batch_max": "default (100)" if batch_max is None else batch_max,
            "modems.sweep_interval": "default (60 s)",
            "sink": "muxd stand-in --record (Onlinesim v2 stand-in, its own process)",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.n_ports = 0
        self.next_metrics = 0.0
        self.must_be_ready: set[str] | None = None  # these ports, not all (--faults)

    def start(self, fleet: Fleet, work: Path) -> None:
        self.n_ports = len(fleet.ports)
        self.log_path = work / "muxd.log"
        self.log = self.log_path.open("wb")
        stand_in, http = free_port(), free_port()
        self.record = JsonlTail(work / "received.jsonl")
        self.api_url = f"http://127.0.0.1:{http}"
        self.metrics_url = f"{self.api_url}/metrics"
        self.stand_in_url = f"http://127.0.0.1:{stand_in}"
        self.stand_in = subprocess.Popen(
            stand_in_argv(stand_in, record=self.record.path),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.procs.append(self.stand_in)
        cfg = work / "muxd.toml"
        globs = ", ".join(f'"{g}"' for g in fleet.globs)
        cfg.write_text(
            f'state_dir = "{work / "state"}"\n'
            f"[modems]\nports = [{globs}]\n"
            f'[numbers]\nfile = "{fleet.numbers_csv}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{stand_in}"\napi_key = "{KEY}"\n'
            + ("" if self.batch_delay is None else f"batch_delay = {self.batch_delay}\n")
            + ("" if self.batch_max is None else f"batch_max = {self.batch_max}\n")
            + f'[http]\nlisten = "127.0.0.1:{http}"\n'
        )
        self.muxd = subprocess.Popen(
            [sys.executable, "-m", "muxd", "run", "-c", str(cfg), "--log-level", self.log_level],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.procs.append(self.muxd)

    def ready(self) -> bool:
        if self.muxd.poll() is not None:
            raise RuntimeError(f"muxd exited with {self.muxd.returncode}")
        now = time.monotonic()
        if now < self.next_metrics:
            return False
        self.next_metrics = now + 1.0
        listed = metric(self.metrics_url, "muxd_numbers_listed") or 0
        if self.must_be_ready is not None:
            got = get_json(f"{self.api_url}/api/ports") or {"ports": []}
            sellable = {p["port"] for p in got["ports"] if p["sellable"]}
            return self.must_be_ready <= sellable and listed >= len(self.must_be_ready)
        # every port sellable, and the whole list accepted by the stand-in
        sellable_n = metric(self.metrics_url, "muxd_ports_sellable") or 0
        return sellable_n >= self.n_ports and listed >= self.n_ports

    def pids(self) -> list[int]:
        return [self.muxd.pid]

    def other_pids(self) -> dict[str, list[int]]:
        return {"sink": [self.stand_in.pid]}

    def deliveries(self) -> list[Delivery]:
        for name, proc in (("muxd", self.muxd), ("the stand-in", self.stand_in)):
            if proc.poll() is not None:  # not a figure: every SMS after it would count as lost
                raise RuntimeError(f"{name} exited with {proc.returncode}")
        return [Delivery(r["t"], r["number"], r["from"], r["message"]) for r in self.record.read()]

    def counters(self) -> dict[str, float]:
        text = scrape(self.metrics_url)
        if text is None:
            return {}
        return {key: metric_sum(text, name) for key, name in MUXD_COUNTERS.items()}

    def stop(self) -> None:
        stop_process(self.muxd, 20)
        stop_process(self.stand_in, 10, signal.SIGINT)  # SIGINT flushes the record on the way out
        self.log.close()

    def log_tail(self) -> str:
        return log_tail(self.log_path)
