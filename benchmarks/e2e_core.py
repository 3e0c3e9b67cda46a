"""Shared parts of the end-to-end benchmark: the fleet, the ledger, /proc accounting, targets.

A *target* is the daemon under test (muxd, or a peer in ``benchmarks.peers``): it is started
against the simulated fleet, reports when it is ready, names the processes whose CPU and RSS
are its own, and hands over what it delivered. The *ledger* compares deliveries with the
simulators' ground truth: every SMS text is unique (see ``benchmarks.e2e_sim``), so a
delivery matches one injected SMS by (receiving number, sender, text) or it is corrupted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from muxd_sim.modem_smsfaults import BAD_SCTS

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


# --- deliveries and the ledger ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    t: float  # when the sink received it (UNIX seconds)
    number: str  # receiving number
    sender: str
    text: str


@dataclass(slots=True)
class Sent:
    t: float  # injection time: when the +CMTI was written
    number: str
    sender: str
    text: str
    step: int
    delivered_at: float | None = None
    copies: int = 0
    corrupted: bool = False  # paired with a delivery whose content differs
    sms_id: str = ""  # the simulator's id
    port: str = ""  # the port it was injected on (the name the daemon sees)
    # why it cannot arrive, if so: "sim-swap" (left in the memory of a swapped-out SIM),
    # "refused" (the memory was full)
    excused: str = ""
    tags: tuple[str, ...] = ()  # its SMS faults (sms_fault_tags)


def sms_fault_tags(record: dict[str, Any]) -> tuple[str, ...]:
    """The simulator's SMS faults on one ground-truth line: ``bad_scts`` (an invalid stamp),
    ``absurd_scts`` (year 2099, zone -17:30), ``reused_ref`` (shares its concatenation
    reference with another message from the same sender, parts interleaved), ``routed``
    (given to the host as ``+CMT``, never stored by the modem)."""
    tags = []
    stamp = record.get("scts_fault")
    if stamp:
        tags.append("bad_scts" if stamp in BAD_SCTS else "absurd_scts")
    if "reused_ref" in record:
        tags.append("reused_ref")
    if record.get("routed"):
        tags.append("routed")
    return tuple(tags)


@dataclass
class StepStats:
    injected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    excused: dict[str, int] = field(default_factory=dict)  # undelivered, and could not be
    first_injection: float | None = None
    last_injection: float | None = None
    last_delivery: float | None = None
    latencies_ms: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


class Ledger:
    """Ground truth vs deliveries.

    The harness reads the ground truth and the deliveries at slightly different moments, so a
    fast delivery can be read before its SMS's ground-truth line: it waits in ``unmatched``
    and is matched when that line arrives. What is still unmatched at the end is corrupted.

    An SMS the simulator could not store (memory full, ``"stored": false``) or that left with a
    swapped-out SIM (a ``"discarded"`` line) is *excused*: not expected, counted apart from the
    lost ones when it does not arrive (delivered when it does: read before the swap).
    """

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.by_key: dict[tuple[str, str, str], Sent] = {}
        # deliveries without (yet) a matching SMS: key -> [(delivery, step when received)]
        self.early: dict[tuple[str, str, str], list[tuple[Delivery, int]]] = {}
        self.delivered = 0
        self.duplicated = 0
        self.injected_by_step: dict[int, int] = defaultdict(int)
        self.delivered_by_step: dict[int, int] = defaultdict(int)
        self.by_id: dict[str, Sent] = {}
        self.excused_pending_by_step: dict[int, int] = defaultdict(int)  # excused, not delivered
        self.recent_ms: list[float] = []  # latencies since the last progress line
        self.points: list[tuple[float, float]] = []  # (injection t, latency ms) for the plot
        self.spurious_steps: list[int] = []  # see pair_corrupted

    @property
    def unmatched(self) -> list[tuple[Delivery, int]]:
        return [item for items in self.early.values() for item in items]

    def expected(self, step: int) -> int:
        """How many SMS of ``step`` can still be delivered or were (all but the excused)."""
        return self.injected_by_step[step] - self.excused_pending_by_step[step]

    def add_sent(self, record: dict[str, Any], step: int) -> None:
        if "event" in record:
            if record["event"] == "discarded":  # SIM swap: it left with the old SIM
                self._excuse(self.by_id.get(record["id"]), record.get("reason") or "discarded")
            return
        sent = Sent(record["t"], record["number"], record["sender"], record["text"], step)
        sent.sms_id, sent.port = record.get("id", ""), record.get("port", "")
        sent.tags = sms_fault_tags(record)
        key = (sent.number, sent.sender, sent.text)
        if key in self.by_key:
            raise RuntimeError(f"ground truth repeats an SMS: {key}")
        self.by_key[key] = sent
        if sent.sms_id:
            self.by_id[sent.sms_id] = sent
        self.sent.append(sent)
        self.injected_by_step[step] += 1
        if record.get("stored") is False:
            self._excuse(sent, "refused")
        for delivery, _ in self.early.pop(key, ()):
            self._deliver(sent, delivery)

    def _excuse(self, sent: Sent | None, reason: str) -> None:
        if sent is None or sent.excused:
            return
        sent.excused = reason
        if sent.delivered_at is None:
            self.excused_pending_by_step[sent.step] += 1

    def add_delivery(self, delivery: Delivery, step: int) -> None:
        key = (delivery.number, delivery.sender, delivery.text)
        sent = self.by_key.get(key)
        if sent is None:
            self.early.setdefault(key, []).append((delivery, step))
        else:
            self._deliver(sent, delivery)

    def _deliver(self, sent: Sent, delivery: Delivery) -> None:
        sent.copies += 1
        if sent.copies > 1:
            self.duplicated += 1
            return
        sent.delivered_at = delivery.t
        if sent.excused:
            self.excused_pending_by_step[sent.step] -= 1
        self.delivered += 1
        self.delivered_by_step[sent.step] += 1
        latency = (delivery.t - sent.t) * 1000
        self.recent_ms.append(latency)
        self.points.append((sent.t, latency))

    def pair_corrupted(self) -> None:
        """Pair each unmatched delivery with an undelivered SMS to the same number (same
        sender first): that SMS arrived, corrupted. Unpaired ones (e.g. a garbled number)
        are counted corrupted in the step they arrived in."""
        waiting: dict[str, list[Sent]] = defaultdict(list)
        for sent in self.sent:
            sent.corrupted = False
            if sent.delivered_at is None and not sent.excused:
                waiting[sent.number].append(sent)
        self.spurious_steps = []
        for delivery, step in self.unmatched:
            candidates = waiting.get(delivery.number, [])
            match = next((s for s in candidates if s.sender == delivery.sender), None)
            if match is None and candidates:
                match = candidates[0]
            if match is None:
                self.spurious_steps.append(step)
            else:
                candidates.remove(match)
                match.corrupted = True

    def stats(self, step: int | None = None) -> StepStats:
        """Totals over ``step`` (None: all); call :meth:`pair_corrupted` first."""
        out = StepStats()
        for sent in self.sent:
            if step is not None and sent.step != step:
                continue
            out.injected += 1
            if out.first_injection is None or sent.t < out.first_injection:
                out.first_injection = sent.t
            if out.last_injection is None or sent.t > out.last_injection:
                out.last_injection = sent.t
            if sent.delivered_at is not None:
                out.delivered += 1
                out.duplicated += sent.copies - 1
                out.latencies_ms.append((sent.delivered_at - sent.t) * 1000)
                if out.last_delivery is None or sent.delivered_at > out.last_delivery:
                    out.last_delivery = sent.delivered_at
            elif sent.corrupted:
                out.corrupted += 1
            elif sent.excused:
                out.excused[sent.excused] = out.excused.get(sent.excused, 0) + 1
            else:
                out.lost += 1
        out.corrupted += sum(1 for at in self.spurious_steps if step is None or at == step)
        return out


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
