"""The end-to-end benchmark's summary table (one row per load step) and printed paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import e2e_faults

ROOT = Path(__file__).resolve().parents[1]


HEADER = (
    f"{'daemon':<10}{'ports':>6}{'rate':>7}{'inj':>8}{'deliv':>8}{'lost':>6}{'dup':>5}"
    f"{'corr':>5}{'thr/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU-s/1k':>9}"
)


def summary_row(name: str, ports: int, r: dict[str, Any]) -> str:
    lat = r.get("latency_ms") or {}

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return (
        f"{name:<10}{ports:>6}{r.get('rate', 0):>7g}{r.get('injected', 0):>8}"
        f"{r.get('delivered', 0):>8}{r.get('lost', 0):>6}{r.get('duplicated', 0):>5}"
        f"{r.get('corrupted', 0):>5}{num(r.get('throughput_sms_s'), '.1f'):>8}"
        f"{num(lat.get('p50'), '.1f'):>9}{num(lat.get('p99'), '.1f'):>9}"
        f"{num(lat.get('max'), '.1f'):>9}{num(r.get('cpu_s_per_1000_sms'), '.3f'):>9}"
    )


def print_summary(result: dict[str, Any]) -> None:
    name, ports = result["daemon"], result["ports"]
    print()
    print(HEADER)
    steps = result.get("find_max", {}).get("steps") or ([result] if result.get("rate") else [])
    for step in steps:
        mark = ""
        if "passed" in step:
            mark = "  ok" if step["passed"] else f"  FAIL ({step['failed_on']})"
        print(summary_row(name, ports, step) + mark)
    print(
        f"idle: {result.get('idle_cpu_pct', '-')} % of one core over {result.get('idle_s', '-')} s;"
        f" peak RSS {result['rss_mb']} MB; start to ready {result['start_to_ready_s']} s"
    )
    for step in steps:
        if step.get("cpu_per_simulator_cpu") is not None:
            print(
                f"at {step['rate']:g} SMS/s: the simulators used"
                f" {step['other_cpu_pct']['simulators']} % of a core (the same work in every run:"
                " a slower machine shows here too); muxd's CPU / the simulators'"
                f" {step['cpu_per_simulator_cpu']}"
            )
    if "find_max" in result:
        fm = result["find_max"]
        print(
            f"find-max: highest sustained rate {fm['max_sustained_rate']} SMS/s "
            f"(first failing {fm['first_failing_rate']}, stopped by {fm['stopped_by']})"
        )
    if "faults" in result:
        for line in e2e_faults.summary_lines(result):
            print(line)
    if result.get("plot"):
        print(f"plot: {result['plot']}")


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
