"""PNG of an end-to-end run: latency of every SMS over time, and the daemon's CPU.

Needs matplotlib (``pip install -e '.[bench]'``); :func:`plot` returns None without it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

CPU_BIN_S = 1.0


def plot(
    path: Path,
    *,
    title: str,
    points: list[tuple[float, float]],
    samples: list[tuple[float, float, float]],
    steps: list[dict[str, Any]],
    t0: float,
) -> Path | None:
    """``points``: (injection time, latency ms); ``samples``: (time, daemon CPU s, RSS MB);
    ``steps``: the load steps (``start``, ``end``, ``rate``); times are UNIX seconds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_lat, ax_cpu) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    if points:
        stride = max(1, len(points) // 60_000)  # keep the PNG light
        xs = [t - t0 for t, _ in points[::stride]]
        ys = [max(ms, 0.01) for _, ms in points[::stride]]
        ax_lat.scatter(xs, ys, s=4, alpha=0.5, linewidths=0)
        ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency, ms (+CMTI → sink)")
    ax_lat.grid(True, which="both", alpha=0.3)
    ax_lat.set_title(title)
    xs, cpu_pct, rss = [], [], []
    coarse: list[tuple[float, float, float]] = []  # >= 1 s apart: CPU ticks are 10 ms
    for sample in samples:
        if not coarse or sample[0] - coarse[-1][0] >= CPU_BIN_S:
            coarse.append(sample)
    for (t_a, cpu_a, _), (t_b, cpu_b, rss_b) in itertools.pairwise(coarse):
        if t_b > t_a:
            xs.append(t_b - t0)
            cpu_pct.append(100 * (cpu_b - cpu_a) / (t_b - t_a))
            rss.append(rss_b)
    ax_cpu.plot(xs, cpu_pct, lw=1, label="daemon CPU, % of one core")
    ax_cpu.set_ylabel("CPU, % of one core")
    ax_cpu.set_xlabel("seconds")
    ax_cpu.grid(True, alpha=0.3)
    ax_rss = ax_cpu.twinx()
    ax_rss.plot(xs, rss, lw=1, color="tab:red", alpha=0.6, label="RSS, MB")
    ax_rss.set_ylabel("RSS, MB")
    ax_rss.set_ylim(bottom=0)
    for step in steps:
        for ax in (ax_lat, ax_cpu):
            ax.axvspan(step["start"] - t0, step["end"] - t0, color="tab:green", alpha=0.06)
        ax_lat.annotate(
            f"{step['rate']:g}/s",
            xy=(step["start"] - t0, 1),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=8,
        )
    lines = ax_cpu.get_legend_handles_labels()
    more = ax_rss.get_legend_handles_labels()
    ax_cpu.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
