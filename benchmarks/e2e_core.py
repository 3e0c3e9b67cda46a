"""Shared parts of the end-to-end benchmark: the fleet, the ledger, /proc accounting, targets.

A *target* is the daemon under test (muxd, or a peer in ``benchmarks.peers``): it is started
against the simulated fleet, reports when it is ready, names the processes whose CPU and RSS
are its own, and hands over what it delivered. The ledger (:mod:`muxd_sim.ledger`) compares
deliveries with the simulators' ground truth: every SMS text is unique (see
``benchmarks.e2e_sim``), so a delivery matches one injected SMS by (receiving number, sender,
text) or it is corrupted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from muxd_sim.ledger import Delivery

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- /proc ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    """GET ``url`` and decode its JSON; None when it cannot be had."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def stop_process(proc: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Ask ``proc`` to stop with ``sig``; kill it when it is still running after ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file ("" when it can't be read)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of ``pid`` (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` value in kB (``VmRSS``, ``VmHWM``); 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (children, grandchildren...)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children[int(fields[1])].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, sys) CPU seconds of the live ``pids``."""
    user = system = 0.0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11]) / CLK_TCK
            system += int(fields[12]) / CLK_TCK
    return user, system


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds of the main threads (``main``) and of all other threads (``threads``)."""
    out = {"main": 0.0, "threads": 0.0}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            key = "main" if int(tid) == pid else "threads"
            out[key] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_total(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def rss_mb(pids: list[int], key: str = "VmRSS") -> float:
    return sum(status_kb(pid, key) for pid in pids) / 1024


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of ``pids`` together (shared pages divided between sharers): the
    fair memory figure for a daemon made of many processes, where summed RSS counts the shared
    libraries once per process."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


# --- the fleet ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortInfo:
    path: Path  # the portNNN symlink a daemon opens
    number: str  # the SIM's number (ground truth)
    iccid: str
    imsi: str
    sim: int  # which simulator process serves it


@dataclass(frozen=True)
class Fleet:
    ports: list[PortInfo]
    dev: Path  # port000, port001... of every simulator process (symlinks to their ptys)
    numbers_csv: Path  # iccid,imsi,number for every port

    @property
    def globs(self) -> list[str]:
        return [f"{self.dev}/port*"]


class JsonlTail:
    """Reads the complete lines appended to a JSON-lines file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


# --- targets ------------------------------------------------------------------------------


class Target(Protocol):
    """The daemon under test (see the module docstring)."""

    name: str
    notes: dict[str, Any]  # how it was configured, for the JSON

    def start(self, fleet: Fleet, work: Path) -> None: ...

    def ready(self) -> bool: ...

    def pids(self) -> list[int]:
        """The processes whose CPU and RSS count as the daemon's."""
        ...

    def other_pids(self) -> dict[str, list[int]]:
        """Helper processes that are not the daemon (its delivery sink), for information."""
        ...

    def deliveries(self) -> list[Delivery]:
        """What the daemon delivered since the last call."""
        ...

    def counters(self) -> dict[str, float]:
        """The daemon's own counters (commits, requests...), for per-SMS ratios; may be {}."""
        ...

    def stop(self) -> None: ...

    def log_tail(self) -> str: ...
