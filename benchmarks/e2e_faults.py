"""Simulator faults in the end-to-end benchmark (``--faults SPEC --fault-share F``).

    python -m benchmarks.e2e --ports 512 --rate 20 --duration 900 --faults all --fault-share 0.25

``SPEC`` is a :func:`muxd_sim.modem_faults.parse_fault_spec` spec (as ``muxd simulate
--faults``) or a preset name (:data:`PRESETS`; ``all`` = every fault that leaves a port usable,
at rates that fire each time-based kind many times in 15 minutes). Every simulator process
gets it and gives it to its ``ModemSimulator`` with the share, so a seeded share of the ports
has the I/O faults from the start and the plan's hangs, vanishings and SIM swaps, which keep
firing until the end of the run (start-up and drain included).

What the ground truth means under faults (see :class:`muxd_sim.ledger.Ledger`):

* every SMS is checked against the number the simulator says it was sent to when it was
  injected (``number`` of its ground-truth line: after a SIM swap, the new SIM's);
* an SMS injected while its port hangs or is gone sits in the SIM memory and must still arrive
  once the port is back; the drain therefore waits for a delivery at least a sweep interval,
  a hang, a vanishing, a rescan and muxd's longest reconnection back-off (:func:`configure`);
* an SMS still in the SIM memory when that SIM is swapped out leaves with it (a
  ``"discarded"`` line): it is *excused*, reported apart, never lost; likewise an SMS the
  simulator refused because the memory was full;
* noise never changes a real line: :func:`muxd_sim.modem_faults.add_noise` puts whole junk
  lines (CRLF-terminated) between lines (with ``mid_pdu`` also between a ``+CMGR:`` header and
  its PDU), and ``split_reads`` only cuts the output into pieces afterwards. A PDU the
  simulator sends is always intact, so *corrupted* means the daemon delivered a text, sender or
  number that was not sent; :meth:`~muxd_sim.ledger.Ledger.misdelivered` says which, with
  the evidence.

The numbers file gets the spare SIMs a swap may insert on the faulty ports (their identities
are deterministic), as an operator's SIM inventory would have them, so that swapped SIMs
without a number in ``AT+CNUM`` (odd ports) still have one. With ``--daemon muxd``, start-up
waits for the non-faulty ports only, and a :class:`FaultWatch` follows the run: the
simulators' fault events (``benchmarks.e2e_sim --events``), muxd's ``/api/ports`` (outages
and recoveries it shows) and, for every swap, the stand-in's ``checkNumber`` of the new number
(it has an id once muxd published it).
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import e2e_smsfaults
from benchmarks.e2e_core import Fleet, JsonlTail, get_json
from muxd.fleet import BACKOFF_MAX
from muxd_sim.ledger import Ledger, Sent, percentile
from muxd_sim.modem_faults import FaultPlan, parse_fault_spec
from muxd_sim.modem_ident import make_identity
from muxd_sim.modem_routed import REDELIVERY_S

PRESETS = {
    # not mute / storage_full (a port that never works), cnum_empty (numbers come from the
    # file), drop_urcs (every SMS of the port by sweep: hides what a hang does to +CMTI),
    # parts / ref16 (the load's SMS are single-part; reused_refs makes 2-part pairs),
    # routed_nocsms (a modem that acknowledges a routed SMS itself loses it for any host
    # when it routes it between two opens of the port, as after a hang or a vanishing);
    # routed: a share only, so that the faulty ports still store most SMS
    "all": "noise=0.05,split_reads,delay=0.2,urc_mid_response,mid_pdu,"
    "hang=120:20,vanish=300:10,swap=600,"
    "late=0.02:5.2-7,reused_refs=0.05,bad_scts=0.02,absurd_scts=0.02,routed=0.2",
}
SWEEP_S = 60.0  # muxd's default modems.sweep_interval: a missed +CMTI waits this long at most
RESCAN_S = 30.0  # muxd's default modems.rescan_interval: a port back from vanishing
RECOVERY_MARGIN_S = 60.0  # timeouts, publication, the rest
WATCH_EVERY = 2.0  # seconds between looks at /api/ports, the events and the stand-in
CHECKS_PER_LOOK = 64  # checkNumber requests per look at most
KEY_FAULT_EVENTS = {
    "mute": "hang",
    "vanish": "vanish",
    "sim-inserted": "swap",
    "late-answer": "late",
    "cnma-timeout": "cnma_timeout",
    "network-retry": "network_retry",
}
FIRED = ("hang", "vanish", "swap", "late", "cnma_timeout", "network_retry")
EXAMPLES = 20  # evidence items kept per kind
# A port back from a hang or vanishing this long is expected ready in muxd again, and a SIM
# kept this long (swapped in this long before the next swap or the end) expected published:
# reconnection back-off, a rescan, a sweep and a publication round all fit in.
SETTLED_S = 120.0
ROOT = Path(__file__).resolve().parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--faults",
        help=f"simulator fault spec (muxd simulate --faults) or preset: {', '.join(PRESETS)}",
    )
    p.add_argument("--fault-share", type=float, default=1.0, help="share of ports with faults")


def configure(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Expand a preset, check the spec, lengthen the drain; ``args.fault_plan`` (or None)."""
    args.fault_plan = None
    if not args.faults:
        return
    args.faults = PRESETS.get(args.faults, args.faults)
    try:
        plan = parse_fault_spec(args.faults)
    except ValueError as exc:
        p.error(f"--faults: {exc}")
    if not 0.0 <= args.fault_share <= 1.0:
        p.error("--fault-share must be within [0, 1]")
    args.fault_plan = plan
    # a port that failed to reopen again and again (a hang outlasting several attempts) waits
    # up to muxd's longest reconnection back-off before the next try
    quiet = SWEEP_S + plan.hang_s + plan.vanish_s + RESCAN_S + BACKOFF_MAX + RECOVERY_MARGIN_S
    quiet += plan.late_max_s  # an answer after the deadline, and the resynchronisation
    if plan.routed > 0 or plan.routed_nocsms > 0:  # a routed SMS not acknowledged in time
        quiet += plan.cnma_timeout_s + REDELIVERY_S
    args.drain_idle = max(args.drain_idle, quiet)
    args.drain_max = max(args.drain_max, 3 * quiet)


def sim_argv(args: argparse.Namespace, events: Path) -> list[str]:
    if not args.faults:
        return []
    return [
        "--faults",
        args.faults,
        "--fault-share",
        repr(args.fault_share),
        "--events",
        str(events),
    ]


def faulty_ports(ready: dict[int, list[str]], sizes: list[int]) -> list[int]:
    """Global indices of the faulty ports, from the simulators' ``ready FAULTY`` lines."""
    out: list[int] = []
    offset = 0
    for k, size in enumerate(sizes):
        fields = ready.get(k) or ["-"]
        if fields[0] != "-":
            out.extend(offset + int(i) for i in fields[0].split(","))
        offset += size
    return out


def swap_generations(args: argparse.Namespace, plan: FaultPlan) -> int:
    """Spare SIMs per faulty port: the swaps expected over a generous run length, + 5 sigma."""
    if plan.swap_every <= 0:
        return 0
    load = args.step_duration * 12 if args.find_max else args.duration
    horizon = 300 + args.idle + load + args.drain_max
    mean = float(horizon) / plan.swap_every
    return math.ceil(mean + 5 * math.sqrt(mean) + 3)


def add_spare_sims(fleet: Fleet, sizes: list[int], faulty: list[int], generations: int) -> set[str]:
    """Append the SIMs a swap may insert on ``faulty`` ports to the numbers file; their numbers.

    ``ModemSimulator.swap_sim`` derives generation ``g`` of port ``i`` of simulator ``k`` as
    ``make_identity(k, i + g * size_k)``.
    """
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    taken = {v for p in fleet.ports for v in (p.number, p.iccid, p.imsi)}
    rows, numbers = [], set()
    for index in faulty:
        k = max(j for j, start in enumerate(starts) if start <= index)
        local = index - starts[k]
        for g in range(1, generations + 1):
            ident = make_identity(k, local + g * sizes[k])
            for value in (ident.number, ident.iccid, ident.imsi):
                if value in taken:
                    raise RuntimeError(f"spare SIM {g} of port {index} collides on {value}")
                taken.add(value)
            rows.append(f"{ident.iccid},,{ident.number}\n")
            numbers.add(ident.number)
    with fleet.numbers_csv.open("a") as fh:
        fh.writelines(rows)
    return numbers


@dataclass
class Swap:
    port: str
    t: float
    number: str
    spare: bool  # its number is in the numbers file
    listed_at: float | None = None  # first seen with an id at the stand-in
    listed_now: bool = False  # at the end: listed, for this port
    superseded_at: float | None = None  # the next swap on the port


class FaultWatch:
    """Follows a faulty run (see the module docstring); :meth:`report` sums it up."""

    def __init__(
        self,
        args: argparse.Namespace,
        faulty: list[str],
        spares: set[str],
        events: list[Path],
        key: str,
    ) -> None:
        self.args = args
        self.faulty = faulty
        self.spares = spares
        self.events = [JsonlTail(path) for path in events]
        self.key = key
        self.code = code_version()  # what muxd imports now (the checkout may change later)
        self.api: str | None = None  # muxd's HTTP root
        self.stand_in: str | None = None  # the Onlinesim stand-in's
        self.fired: Counter[str] = Counter()
        self.by_port: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.swaps: list[Swap] = []
        self.state: dict[str, bool] = {}  # port -> ready at the last look
        self.was_ready: set[str] = set()
        self.outages: Counter[str] = Counter()
        self.recoveries: Counter[str] = Counter()
        self.ready_at: dict[str, list[float]] = defaultdict(list)  # looks that found it ready
        self.last_ports: list[dict[str, Any]] = []
        self.next_look = 0.0

    def connect(self, target: object) -> None:
        """Watch muxd's ``/api/ports`` and its stand-in too (other daemons: the events only)."""
        self.api = getattr(target, "api_url", None)
        self.stand_in = getattr(target, "stand_in_url", None)

    def poll(self) -> None:
        now = time.time()
        if now < self.next_look:
            return
        self.next_look = now + WATCH_EVERY
        self._read_events()
        self._look_at_ports(now)
        self._check_swaps(CHECKS_PER_LOOK)

    def _read_events(self) -> None:
        for tail in self.events:
            for event in tail.read():
                port, kind = event["port"], event["event"]
                self.by_port[port].append(event)
                if kind in KEY_FAULT_EVENTS:
                    self.fired[KEY_FAULT_EVENTS[kind]] += 1
                if kind == "sim-inserted":
                    for swap in self.swaps:
                        if swap.port == port and swap.superseded_at is None:
                            swap.superseded_at = event["t"]
                    spare = event["number"] in self.spares
                    self.swaps.append(Swap(port, event["t"], event["number"], spare))

    def _look_at_ports(self, now: float) -> None:
        if self.api is None:
            return
        got = get_json(f"{self.api}/api/ports")
        if not got:
            return
        self.last_ports = got["ports"]
        for row in self.last_ports:
            name, ready = row["port"], row["state"] == "ready"
            before = self.state.get(name)
            if ready:
                self.ready_at[name].append(now)
                if before is False and name in self.was_ready:
                    self.recoveries[name] += 1
                self.was_ready.add(name)
            elif before:
                self.outages[name] += 1
            self.state[name] = ready

    def _check_number(self, number: str) -> dict[str, Any] | None:
        if self.stand_in is None:
            return None
        query = urllib.parse.urlencode({"number": number})
        url = f"{self.stand_in}/api/resellers/checkNumber?{query}"
        got = get_json(url, {"Authorization": f"Bearer {self.key}"})
        return got if isinstance(got, dict) else None

    def _check_swaps(self, limit: int | None) -> None:
        pending = [s for s in self.swaps if s.listed_at is None]
        for swap in pending[:limit]:
            info = self._check_number(swap.number)
            if info is not None and info.get("id"):
                swap.listed_at = time.time()

    def finish(self) -> None:
        """Last look at everything (before the daemon and the stand-in stop)."""
        self.next_look = 0.0
        self.poll()
        self._check_swaps(None)
        last: dict[str, Swap] = {}
        for swap in self.swaps:
            last[swap.port] = swap
        for swap in last.values():
            info = self._check_number(swap.number)
            swap.listed_now = bool(info and info.get("status") == 1)
            swap.listed_now = swap.listed_now and info is not None and info["port_id"] == swap.port

    def report(self, ledger: Ledger, end: float) -> dict[str, Any]:
        plan: FaultPlan = self.args.fault_plan
        out: dict[str, Any] = {
            "command": shlex.join(["python", "-m", "benchmarks.e2e", *sys.argv[1:]]),
            "code": self.code,
            "spec": self.args.faults,
            "share": self.args.fault_share,
            "faulty_ports": len(self.faulty),
            "fired": {kind: self.fired[kind] for kind in FIRED},
            "fired_note": "simulator events from its start to the end of the drain",
            "watch_note": f"muxd's /api/ports read every {WATCH_EVERY:g} s (in its CPU figure)",
            "drain_idle_s": self.args.drain_idle,
            "drain_max_s": self.args.drain_max,
        }
        if self.api is not None:
            down = {r["port"] for r in self.last_ports if r["state"] != "ready"}
            recent = self._in_fault(end - SETTLED_S, end)
            out["muxd"] = {
                "port_outages_seen": sum(self.outages.values()),
                "port_recoveries_seen": sum(self.recoveries.values()),
                "ports_with_outages": len(self.outages),
                "seen_every_s": WATCH_EVERY,
                "ports_down_at_end": len(down),
                # hung or gone at some time in the last SETTLED_S s: may still be coming back
                "ports_down_at_end_after_a_recent_fault": len(down & recent),
                "ports_down_at_end_unexplained": sorted(down - recent)[:EXAMPLES],
                "recovery_after_fault_end_s": self._recovery_times(end),
                "at_timeouts": sum(r.get("at_timeouts") or 0 for r in self.last_ports),
                "at_resyncs": sum(r.get("resyncs") or 0 for r in self.last_ports),
            }
        out["swaps"] = self._swap_report(plan, end)
        out["misdelivered"] = ledger.misdelivered()
        out["sms_faults"] = e2e_smsfaults.report(ledger)
        out["lost_examples"] = self._examples(ledger, lambda s: not s.corrupted and not s.excused)
        out["excused_examples"] = self._examples(ledger, lambda s: bool(s.excused))
        return out

    def _in_fault(self, start: float, end: float) -> set[str]:
        """Ports hung or gone at some time within [start, end] (by the simulators' events)."""
        busy = set()
        for port, events in self.by_port.items():
            hung = gone = False
            for event in events:
                if event["t"] > end or (event["t"] >= start and (hung or gone)):
                    break  # in a fault when the window opened, or went into one within it
                kind = event["event"]
                hung = kind == "mute" or (hung and kind != "unmute")
                gone = kind == "vanish" or (gone and kind != "reappear")
            if hung or gone:
                busy.add(port)
        return busy

    def _recovery_times(self, end: float) -> dict[str, Any]:
        """Per hang/vanishing that ended: seconds until muxd was next seen with the port ready."""
        waits: list[float] = []
        never: list[dict[str, Any]] = []
        for port, events in self.by_port.items():
            looks = self.ready_at.get(port, [])
            for event in events:
                if event["event"] not in ("unmute", "reappear"):
                    continue
                after = next((t for t in looks if t >= event["t"]), None)
                if after is not None:
                    waits.append(after - event["t"])
                elif end - event["t"] > SETTLED_S:
                    never.append({"port": port, "event": event["event"], "t": event["t"]})
        return {
            "count": len(waits),
            "p50": _round(percentile(waits, 50)),
            "p99": _round(percentile(waits, 99)),
            "max": _round(max(waits, default=None)),
            "not_back": never[:EXAMPLES],
            "not_back_count": len(never),
        }

    def _swap_report(self, plan: FaultPlan, end: float) -> dict[str, Any]:
        delays = [s.listed_at - s.t for s in self.swaps if s.listed_at is not None]
        kept = [s for s in self.swaps if (s.superseded_at or end) - s.t >= SETTLED_S]
        missing = [s for s in kept if s.listed_at is None]
        last = {s.port: s for s in self.swaps}
        return {
            "total": len(self.swaps),
            "republished": len(delays),
            f"kept_{SETTLED_S:.0f}s": len(kept),
            f"kept_{SETTLED_S:.0f}s_republished": len(kept) - len(missing),
            f"kept_{SETTLED_S:.0f}s_not_republished": [
                {
                    "port": s.port,
                    "number": s.number,
                    "t": round(s.t, 3),
                    "sim_kept_s": round((s.superseded_at or end) - s.t, 1),
                }
                for s in missing[:EXAMPLES]
            ],
            "republish_delay_s": {
                "p50": _round(percentile(delays, 50)),
                "max": _round(max(delays, default=None)),
                "resolution_s": WATCH_EVERY,
            },
            "last_sim_listed_for_its_port": sum(1 for s in last.values() if s.listed_now),
            "last_sim_not_listed": [
                {
                    "port": s.port,
                    "number": s.number,
                    "sim_kept_s": round(end - s.t, 1),
                    "port_hung_or_gone_since": s.port in self._in_fault(s.t, end),
                }
                for s in last.values()
                if not s.listed_now
            ][:EXAMPLES],
            "ports_swapped": len(last),
            "beyond_spare_sims": sum(1 for s in self.swaps if not s.spare),
            "spare_sims_per_port": swap_generations(self.args, plan),
        }

    def _examples(self, ledger: Ledger, which: Callable[[Sent], bool]) -> list[dict[str, Any]]:
        """Undelivered SMS ``which`` says yes to, with their port's fault events from 300 s
        before their injection (the evidence for a loss)."""
        chosen = [s for s in ledger.sent if s.delivered_at is None and which(s)]
        return [
            {
                "port": s.port,
                "t": round(s.t, 3),
                "number": s.number,
                "sender": s.sender,
                "text": s.text,
                "excused": s.excused or None,
                "port_events": [
                    {"t": round(e["t"], 3), "event": e["event"]}
                    for e in self.by_port.get(s.port, [])
                    if s.t - 300 <= e["t"]
                ][:12],
            }
            for s in chosen[:EXAMPLES]
        ]


def code_version() -> dict[str, Any]:
    """The checkout's commit and the files of ``muxd/`` that differ from it."""

    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        except OSError:
            return ""
        return done.stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain", "muxd").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "muxd_changed_files": dirty}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summary_lines(result: dict[str, Any]) -> list[str]:
    f = result["faults"]
    fired = f["fired"]
    lines = [
        f"faults: {f['spec']} on {f['faulty_ports']} ports (share {f['share']:g}); "
        f"fired {fired['hang']} hangs, {fired['vanish']} vanishings, {fired['swap']} SIM swaps",
        f"excused (not lost: left with a swapped-out SIM, or refused, memory full): "
        f"{result.get('excused') or 0}",
    ]
    m = f.get("muxd")
    if m:
        rec = m["recovery_after_fault_end_s"]
        lines.append(
            f"muxd: {m['port_outages_seen']} port outages, {m['port_recoveries_seen']} recoveries "
            f"seen (every {m['seen_every_s']:g} s); back after a hang/vanishing: "
            f"p50 {rec['p50']} s, max {rec['max']} s, not back {rec['not_back_count']}; "
            f"down at end {m['ports_down_at_end']} "
            f"({m['ports_down_at_end_after_a_recent_fault']} after a fault in the last "
            f"{SETTLED_S:.0f} s)"
        )
    s = f["swaps"]
    delay = s["republish_delay_s"]
    kept = f"kept_{SETTLED_S:.0f}s"
    lines.append(
        f"swaps: {s['republished']} of {s['total']} new numbers published, "
        f"{s[kept + '_republished']} of the {s[kept]} SIMs kept >= {SETTLED_S:.0f} s "
        f"(delay p50 {delay['p50']} s, max {delay['max']} s); last SIM listed on "
        f"{s['last_sim_listed_for_its_port']} of {s['ports_swapped']} swapped ports"
    )
    lines.append(e2e_smsfaults.summary_line(f["sms_faults"]))
    if fired["late"] or fired["cnma_timeout"]:
        lines.append(
            f"late answers {fired['late']}, routed SMS not acknowledged in time "
            f"{fired['cnma_timeout']}, network retries {fired['network_retry']}"
        )
    mis = f["misdelivered"]
    if mis["count"]:
        lines.append(f"misdelivered: {mis['count']} ({mis['by_what']})")
    return lines
