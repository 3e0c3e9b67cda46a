"""End-to-end benchmark: simulated modems -> daemon -> Onlinesim stand-in, every SMS checked.

    python -m benchmarks.e2e --ports 256 --rate 50 --duration 60 --json OUT
    python -m benchmarks.e2e --ports 512 --find-max --json OUT
    python -m benchmarks.e2e --ports 512 --rate 0 --idle 60          # idle only

Processes: ``--sims`` simulator processes (``benchmarks.e2e_sim``, ports split between them,
distinct seeds so every SIM differs, each injecting ``rate / sims``), the Onlinesim stand-in
(``muxd stand-in --record``, the delivery sink) and ``muxd run``: each its own process, so the
CPU and RSS figures are muxd's alone (user+sys from /proc, peak RSS = VmHWM).

Phases: start-up until every port is sellable (muxd's /metrics), a settle, ``--idle`` seconds
of idling (idle CPU), sustained injection at ``--rate`` for ``--duration`` seconds, then a
drain until every SMS arrived (or nothing arrived for ``--drain-idle`` seconds: the rest is
lost). ``--find-max`` repeats injection+drain at rising rates until p99 latency passes
``--max-p99-ms`` or anything is lost, duplicated or corrupted (or the simulators cannot
generate the rate), refines between the last good and the first bad rate, and reports the
highest rate sustained.

Latency = the sink's receipt time - the simulator's injection time (the +CMTI write), both
from this machine's clock. muxd runs with its default config (adaptive batches: an SMS goes out
at once when no request is in flight, up to 100 together while one is; sweep_interval 60 s);
``--batch-delay`` and ``--batch-max`` set those keys for comparison.

``--faults SPEC --fault-share F`` gives the simulators' faults (hangs, vanishing ports, SIM
swaps, line noise...) to a share of the ports and reports what fired and how the daemon coped
(``benchmarks.e2e_faults``: what the ground truth means then, the longer drain).

``--daemon smstools3|gsmmodem`` drives a peer instead (``benchmarks.peers``) with the same
fleet, phases and JSON; their sink is their own output (smsd's incoming files, the runner's
JSON lines).

Output: a progress line every few seconds (stderr), a summary table, one JSON object
(``--json``), and a PNG (latency over time, CPU, RSS) when matplotlib is installed
(``pip install -e '.[bench]'``; default path ``docs/bench-<daemon>-<ports>p-<rate or max>.png``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import e2e_faults
from benchmarks.e2e_core import (
    Fleet,
    JsonlTail,
    Target,
    cpu_seconds,
    cpu_split,
    descendants,
    pss_mb,
    rss_mb,
    thread_cpu,
)
from benchmarks.e2e_fleet import POLL, ROOT, SimProc, build_fleet, wait_lines
from benchmarks.e2e_muxd import KEY, MuxdTarget
from benchmarks.e2e_report import display_path, print_summary, summary_row
from muxd_sim.ledger import Ledger, percentile

PROGRESS_EVERY = 2.0
SIM_START_TIMEOUT = 90.0
READY_TIMEOUT = 300.0
SETTLE = 5.0  # after ready: first publish, first sweeps, first health round
START_DELAY = 0.5  # the simulators start a step this long after being told
ENCODE_AHEAD = 200e-6  # plus this per SMS of a simulator's share (it encodes them first)
STEP_GRACE = 60.0  # a simulator must report "done" this long after a step's end
GENERATOR_SHORTFALL = 0.97  # below this share of the asked rate, the simulators were the limit
AUTO_SIM_RATE = 700.0  # SMS/s one simulator process is given before another is added
MAX_AUTO_SIMS = 4


def make_target(args: argparse.Namespace) -> Target:
    if args.daemon == "muxd":
        return MuxdTarget(
            batch_delay=args.batch_delay, batch_max=args.batch_max, log_level=args.log_level
        )
    if args.daemon == "smstools3":
        from benchmarks.peers.smstools import SmstoolsTarget

        return SmstoolsTarget()
    from benchmarks.peers.pygsmmodem import GsmmodemTarget

    return GsmmodemTarget()


# --- the run ------------------------------------------------------------------------------


def tree(pids: list[int]) -> Callable[[], list[int]]:
    """A function listing ``pids`` and their descendants as they are now."""
    return lambda: [q for p in pids for q in descendants(p)]


class CpuMeter:
    """CPU seconds of a changing set of processes; a process that exits keeps its share."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.seen: dict[int, float] = {}

    def read(self) -> float:
        for pid in self.pids():
            cpu = cpu_seconds(pid)
            if cpu >= self.seen.get(pid, 0.0):
                self.seen[pid] = cpu
        return sum(self.seen.values())


@dataclass
class Runner:
    args: argparse.Namespace
    target: Target
    sims: list[SimProc]
    truth: list[JsonlTail]
    ledger: Ledger = field(default_factory=Ledger)
    step: int = 0
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    next_progress: float = 0.0
    phase: str = "start"
    phase_start: float = 0.0
    peak_rss: float = 0.0
    on_poll: Callable[[], None] | None = None  # e2e_faults.FaultWatch.poll

    def __post_init__(self) -> None:
        self.cpu = CpuMeter(self.daemon_pids)
        self.other = {"simulators": CpuMeter(lambda: [s.proc.pid for s in self.sims])}
        for name, pids in self.target.other_pids().items():
            self.other[name] = CpuMeter(tree(pids))

    def daemon_pids(self) -> list[int]:
        return [q for p in self.target.pids() for q in descendants(p)]

    def set_phase(self, phase: str) -> None:
        self.phase, self.phase_start = phase, time.time()

    def poll(self) -> None:
        """Read new ground truth and deliveries, sample CPU and RSS, print progress."""
        for sim, tail in zip(self.sims, self.truth, strict=True):
            for record in tail.read():
                if "port" in record:  # the simulator's name -> the daemon's (e2e_sim --alias)
                    record["port"] = f"port{sim.offset + int(record['port'][4:]):03d}"
                self.ledger.add_sent(record, self.step)
        if self.on_poll is not None:
            self.on_poll()
        for delivery in self.target.deliveries():
            self.ledger.add_delivery(delivery, self.step)
        now = time.time()
        pids = self.daemon_pids()
        rss = rss_mb(pids)
        self.peak_rss = max(self.peak_rss, rss)
        self.samples.append((now, self.cpu.read(), rss))
        if now >= self.next_progress:
            self.progress(now, rss)
            self.next_progress = now + PROGRESS_EVERY

    def progress(self, now: float, rss: float) -> None:
        recent = self.ledger.recent_ms
        p99 = percentile(recent, 99)
        self.ledger.recent_ms = []
        window = [s for s in self.samples if s[0] >= now - PROGRESS_EVERY - POLL]
        cpu_pct = 0.0
        if len(window) >= 2 and window[-1][0] > window[0][0]:
            cpu_pct = 100 * (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        injected = len(self.ledger.sent)
        line = (
            f"[{self.target.name} {self.phase} {now - self.phase_start:5.0f} s] "
            f"injected {injected} delivered {self.ledger.delivered} "
            f"pending {injected - self.ledger.delivered} "
            f"dup {self.ledger.duplicated} unmatched {len(self.ledger.unmatched)} "
            f"p99(last {PROGRESS_EVERY:g} s) {'-' if p99 is None else f'{p99:.0f} ms'} "
            f"CPU {cpu_pct:.1f}% RSS {rss:.0f} MB"
        )
        print(line, file=sys.stderr, flush=True)

    def cpu_at(self, t: float) -> float:
        """The daemon's CPU seconds at ``t``, interpolated between samples."""
        samples = self.samples
        if not samples:
            return 0.0
        if t <= samples[0][0]:
            return samples[0][1]
        for (ta, ca, _), (tb, cb, _) in itertools.pairwise(samples):
            if ta <= t <= tb:
                return ca if tb == ta else ca + (cb - ca) * (t - ta) / (tb - ta)
        return samples[-1][1]

    def wait(self, seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            self.poll()
            time.sleep(min(POLL, max(0.0, end - time.time())))

    def idle(self, seconds: float) -> dict[str, float]:
        self.set_phase("idle")
        cpu0, t0 = self.cpu.read(), time.time()
        self.wait(seconds)
        cpu, wall = self.cpu.read() - cpu0, time.time() - t0
        return {"idle_s": round(wall, 1), "idle_cpu_pct": round(100 * cpu / wall, 2)}

    def load(self, rate: float, duration: float, idle_cpu_pct: float | None) -> dict[str, Any]:
        """One injection step and its drain; returns its figures."""
        self.step += 1
        step = self.step
        others0 = {name: meter.read() for name, meter in self.other.items()}
        split0 = cpu_split(self.daemon_pids())
        threads0 = thread_cpu(self.daemon_pids())
        counters0 = self.target.counters()
        share = rate / len(self.sims)
        start = time.time() + START_DELAY + ENCODE_AHEAD * share * duration
        for sim in self.sims:
            sim.send(f"load {share!r} {duration!r} {start!r}")
        self.set_phase(f"load {rate:g}/s")
        profiler = None
        if self.args.profile and step == 1:
            from benchmarks import e2e_profile

            profiler = e2e_profile.start(self.target.pids()[0], duration, Path(self.args.profile))
        done = wait_lines(self.sims, "done", START_DELAY + duration + STEP_GRACE, self.poll)
        if profiler is not None:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait()
        load_end = time.time()
        self.poll()
        self.set_phase("drain")
        last_change, last_count = time.time(), -1
        while True:
            count = self.ledger.delivered_by_step[step]
            now = time.time()
            if count != last_count:
                last_change, last_count = now, count
            if count >= self.ledger.expected(step):
                break
            if now - last_change > self.args.drain_idle or now - load_end > self.args.drain_max:
                break
            time.sleep(POLL)
            self.poll()
        end = time.time()
        split = cpu_split(self.daemon_pids())
        threads = thread_cpu(self.daemon_pids())
        counters = self.target.counters()
        self.ledger.pair_corrupted()
        st = self.ledger.stats(step)
        last = st.last_delivery or end
        window = max(last - start, 1e-9)
        cpu = self.cpu_at(last) - self.cpu_at(start)
        gen_window = (st.last_injection or start) - (st.first_injection or start)
        injected_rate = (st.injected - 1) / gen_window if gen_window > 0 else 0.0
        late_ms = max(float(fields[1]) for fields in done.values())
        at_commands: dict[str, int] = {}
        for fields in done.values():
            for verb, n in json.loads(fields[2]).items():
                at_commands[verb] = at_commands.get(verb, 0) + n
        other_cpu = {name: meter.read() - others0[name] for name, meter in self.other.items()}
        others = {
            name: round(100 * used / max(end - start, 1e-9), 1) for name, used in other_cpu.items()
        }

        def ms(q: float) -> float | None:
            v = percentile(st.latencies_ms, q)
            return None if v is None else round(v, 1)

        result: dict[str, Any] = {
            "rate": rate,
            "duration_s": duration,
            "injected": st.injected,
            "delivered": st.delivered,
            "lost": st.lost,
            "duplicated": st.duplicated,
            "corrupted": st.corrupted,
            **({"excused": st.excused} if st.excused else {}),
            "throughput_sms_s": round(st.delivered / window, 1),
            "latency_ms": {
                "p50": ms(50),
                "p99": ms(99),
                "max": None if not st.latencies_ms else round(max(st.latencies_ms), 1),
            },
            "cpu_s": round(cpu, 3),
            "cpu_user_sys_s": [round(split[0] - split0[0], 2), round(split[1] - split0[1], 2)],
            "cpu_s_per_1000_sms": round(1000 * cpu / st.delivered, 4) if st.delivered else None,
            "injected_rate_sms_s": round(injected_rate, 1),
            "generator_max_late_ms": late_ms,
            "cpu_window_s": round(window, 2),
            "other_cpu_pct": others,
            # The simulators do the same work in every run of the same rate, ports and seed (and
            # the same AT commands per SMS, which they answer): on a shared machine whose speed
            # changes from one minute to the next their CPU moves with muxd's and this ratio
            # does not. Compare runs of one muxd by it, not by CPU-s alone; a change that sends
            # fewer AT commands lowers both sides, so compare such changes interleaved.
            "cpu_per_simulator_cpu": (
                round(cpu / other_cpu["simulators"], 3) if other_cpu["simulators"] > 0 else None
            ),
            "start": start,
            "end": last,
        }
        result["cpu_s_by_thread"] = {
            name: round(cpu - threads0.get(name, 0.0), 2) for name, cpu in threads.items()
        }
        if st.delivered:
            result["per_sms"] = {
                key: round((value - counters0.get(key, 0.0)) / st.delivered, 3)
                for key, value in counters.items()
            }
            busiest = sorted(at_commands.items(), key=lambda kv: -kv[1])
            result["per_sms"]["at_commands"] = {
                verb: round(n / st.delivered, 3) for verb, n in busiest[:8]
            }
        if idle_cpu_pct is not None and st.delivered:
            net = cpu - idle_cpu_pct / 100 * window
            result["cpu_s_per_1000_sms_net_of_idle"] = round(1000 * net / st.delivered, 4)
        return result


def passed(step: dict[str, Any], max_p99: float) -> tuple[bool, str]:
    if step["injected_rate_sms_s"] < GENERATOR_SHORTFALL * step["rate"]:
        return False, "generator"
    if step["lost"] or step["duplicated"] or step["corrupted"]:
        return False, "loss"
    p99 = step["latency_ms"]["p99"]
    if p99 is None or p99 > max_p99:
        return False, "p99"
    return True, ""


def find_max(runner: Runner, args: argparse.Namespace, idle_pct: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    good: dict[str, Any] | None = None
    bad_rate: float | None = None
    stopped_by = "max-rate"
    rate = args.rate or args.start_rate
    while rate <= args.max_rate:
        step = runner.load(rate, args.step_duration, idle_pct)
        ok, why = passed(step, args.max_p99_ms)
        step["passed"], step["failed_on"] = ok, why or None
        steps.append(step)
        print(summary_row(runner.target.name, args.ports, step), file=sys.stderr, flush=True)
        if not ok:
            bad_rate, stopped_by = rate, why
            break
        good = step
        rate = round(rate * args.step_factor)
    for _ in range(args.refine if bad_rate is not None else 0):
        low = good["rate"] if good else 0.0
        assert bad_rate is not None
        mid = round((low + bad_rate) / 2)
        if mid <= low or mid >= bad_rate:
            break
        step = runner.load(mid, args.step_duration, idle_pct)
        ok, why = passed(step, args.max_p99_ms)
        step["passed"], step["failed_on"] = ok, why or None
        steps.append(step)
        print(summary_row(runner.target.name, args.ports, step), file=sys.stderr, flush=True)
        if ok:
            good = step
        else:
            bad_rate, stopped_by = mid, why
    best = good or steps[-1]
    return {
        **best,
        "find_max": {
            "max_sustained_rate": good["rate"] if good else None,
            "criteria": f"p99 <= {args.max_p99_ms:g} ms, 0 lost/duplicated/corrupted, "
            f"simulators reach >= {GENERATOR_SHORTFALL:.0%} of the rate",
            "first_failing_rate": bad_rate,
            "stopped_by": stopped_by,
            "step_duration_s": args.step_duration,
            "steps": steps,
        },
    }


def auto_sims(args: argparse.Namespace) -> int:
    if args.sims:
        return int(args.sims)
    peak = args.max_rate if args.find_max else args.rate
    return max(1, min(MAX_AUTO_SIMS, math.ceil(float(peak) / AUTO_SIM_RATE), int(args.ports)))


def start_faults(
    args: argparse.Namespace,
    fleet: Fleet,
    sizes: list[int],
    ready: dict[int, list[str]],
    target: Target,
    work: Path,
) -> e2e_faults.FaultWatch:
    """Spare SIMs in the numbers file, start-up waits for the healthy ports, a fault watch."""
    faulty = e2e_faults.faulty_ports(ready, sizes)
    names = [fleet.ports[i].path.name for i in faulty]
    generations = e2e_faults.swap_generations(args, args.fault_plan)
    spares = e2e_faults.add_spare_sims(fleet, sizes, faulty, generations)
    if isinstance(target, MuxdTarget):
        target.must_be_ready = {p.path.name for p in fleet.ports} - set(names)
    events = [work / f"events{k}.jsonl" for k in range(len(sizes))]
    return e2e_faults.FaultWatch(args, names, spares, events, KEY)


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = make_target(args)
    n_sims = auto_sims(args)
    keep = Path(args.keep) if args.keep else None
    with tempfile.TemporaryDirectory(prefix="muxd-e2e-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fleet, sizes = build_fleet(work, args.ports, n_sims)
        sim_err = (work / "simulators.log").open("wb")
        sims: list[SimProc] = []
        started = False
        try:
            offset = 0
            for k, size in enumerate(sizes):
                alias = (fleet.dev, offset)
                extra = e2e_faults.sim_argv(args, work / f"events{k}.jsonl")
                truth = work / f"truth{k}.jsonl"
                sims.append(SimProc(k, size, work / f"sim{k}", alias, truth, sim_err, extra))
                offset += size
            ready = wait_lines(sims, "ready", SIM_START_TIMEOUT, lambda: None)
            watch = None
            if args.fault_plan is not None:
                watch = start_faults(args, fleet, sizes, ready, target, work)
            t_start = time.time()
            started = True
            target.start(fleet, work)
            runner = Runner(args, target, sims, [JsonlTail(s.log) for s in sims])
            if watch is not None:
                watch.connect(target)
                runner.on_poll = watch.poll
            runner.set_phase("start")
            deadline = time.monotonic() + READY_TIMEOUT
            while not target.ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{target.name} not ready in {READY_TIMEOUT:.0f} s")
                runner.poll()
                time.sleep(POLL)
            to_ready = time.time() - t_start
            runner.set_phase("settle")
            runner.wait(SETTLE)
            result: dict[str, Any] = {
                "daemon": target.name,
                "ports": args.ports,
                "simulator_processes": n_sims,
                "start_to_ready_s": round(to_ready, 1),
            }
            idle_pct = None
            if args.idle > 0:
                result.update(runner.idle(args.idle))
                idle_pct = result["idle_cpu_pct"]
            if args.find_max:
                result.update(find_max(runner, args, idle_pct))
            elif args.rate > 0 and args.duration > 0:
                result.update(runner.load(args.rate, args.duration, idle_pct))
            else:
                result.update({"rate": 0, "duration_s": 0})
            if watch is not None:
                watch.finish()
                runner.ledger.pair_corrupted()
                result["faults"] = watch.report(runner.ledger, time.time())
            if args.profile and Path(args.profile).exists():
                from benchmarks import e2e_profile

                result["profile"] = {
                    "file": display_path(Path(args.profile)),
                    **e2e_profile.summarise(Path(args.profile)),
                }
            pids = runner.daemon_pids()
            result["rss_mb"] = round(max(rss_mb(pids, "VmHWM"), runner.peak_rss), 1)
            result["rss_now_mb"] = round(rss_mb(pids), 1)
            result["pss_now_mb"] = round(pss_mb(pids), 1)
            result["daemon_processes"] = len(pids)
            result["config"] = target.notes
            t0 = runner.samples[0][0] if runner.samples else t_start
            steps = result.get("find_max", {}).get("steps") or (
                [result] if result.get("start") else []
            )
            if not args.no_plot:
                label = "max" if args.find_max else (f"{args.rate:g}" if args.rate else "idle")
                path = Path(
                    args.plot or ROOT / f"docs/bench-{target.name}-{args.ports}p-{label}.png"
                )
                title = f"{target.name}, {args.ports} ports, " + (
                    "find-max" if args.find_max else f"{args.rate:g} SMS/s for {args.duration:g} s"
                )
                made = None
                if steps:
                    from benchmarks.e2e_plot import plot

                    made = plot(
                        path,
                        title=title,
                        points=runner.ledger.points,
                        samples=runner.samples,
                        steps=steps,
                        t0=t0,
                    )
                result["plot"] = None if made is None else display_path(made)
            for step in steps:
                step.pop("start", None)
                step.pop("end", None)
        except BaseException:
            if started:
                sys.stderr.write(f"--- {target.name} log tail ---\n{target.log_tail()}\n")
            raise
        finally:
            if started:
                target.stop()
            for sim in sims:
                sim.stop()
            sim_err.close()
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ports", type=int, default=256)
    p.add_argument("--rate", type=float, default=50.0, help="SMS/s (0: idle only)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of injection")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    p.add_argument("--json", help="write the result object here")
    p.add_argument("--daemon", choices=["muxd", "smstools3", "gsmmodem"], default="muxd")
    p.add_argument("--sims", type=int, default=0, help="simulator processes (0: by rate)")
    p.add_argument("--drain-idle", type=float, default=10.0, help="drain ends after this quiet")
    p.add_argument("--drain-max", type=float, default=120.0, help="drain ends after this")
    p.add_argument(
        "--batch-delay", type=float, help="muxd upstream.batch_delay (default: unset, adaptive)"
    )
    p.add_argument("--batch-max", type=int, help="muxd upstream.batch_max (default: unset, 100)")
    p.add_argument("--log-level", default="warning", help="muxd's")
    p.add_argument("--find-max", action="store_true", help="step the rate up to the limit")
    p.add_argument("--start-rate", type=float, default=250.0, help="find-max's first rate")
    p.add_argument("--step-factor", type=float, default=1.5, help="find-max's rate multiplier")
    p.add_argument("--step-duration", type=float, default=15.0, help="find-max's seconds a step")
    p.add_argument("--refine", type=int, default=2, help="find-max's bisections after a failure")
    p.add_argument("--max-rate", type=float, default=6000.0, help="find-max stops here")
    p.add_argument("--max-p99-ms", type=float, default=1000.0, help="find-max's latency bound")
    p.add_argument("--plot", help="PNG path (default docs/bench-<daemon>-<ports>p-<rate>.png)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--profile", help="py-spy the daemon during the first load step; collapsed stacks here"
    )
    p.add_argument("--keep", help="work in this directory and keep it (logs, truth, record)")
    e2e_faults.add_arguments(p)
    args = p.parse_args(argv)
    e2e_faults.configure(args, p)
    if args.find_max and args.rate == 50.0:
        args.rate = 0.0  # the default rate is the sustained run's; find-max uses --start-rate
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_summary(result)
    if "profile" in result:
        from benchmarks import e2e_profile

        e2e_profile.print_summary(result["profile"])
    text = json.dumps(result, indent=2)
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
