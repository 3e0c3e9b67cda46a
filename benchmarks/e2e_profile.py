"""``--profile``: py-spy on the daemon during a load step, summarised as top frames.

py-spy (``pip install py-spy``) samples the daemon process from outside (no code change, no
restart; ``--nonblocking`` so the target is never paused) and writes collapsed stacks
(``frame;frame;... count``). ``--gil`` (the default mode here) keeps only samples of the
thread holding the GIL: the Python work, wherever it runs; SQLite's C code (which releases the
GIL), the kernel (fsync, pty and socket I/O) and uvloop's C internals appear only as the
Python frame that called them, or not at all: compare with the /proc user/sys split.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLE_RATE = 200  # Hz
TOP = 25
_LOCATION = re.compile(r" \((?:[^()]*/)?(?P<file>[^/()]+):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy")
    return str(found) if Path(found).exists() else None


def start(
    pid: int, duration: float, out: Path, *, gil: bool = True
) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        print("--profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(duration))),
            "--rate",
            str(SAMPLE_RATE),
            "--nonblocking",
            *(["--gil"] if gil else []),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines merged per function."""
    match = _LOCATION.search(frame)
    if match is None:
        return frame
    return f"{frame[: match.start()]} ({match.group('file')})"


def summarise(collapsed: Path, top: int = TOP) -> dict[str, Any]:
    """Self and inclusive shares of the samples, per function."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "pct": round(100 * n / total, 1)}
            for frame, n in counter.most_common(top)
        ]

    return {"samples": total, "top_self": table(own), "top_inclusive": table(inclusive)}


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nprofile: py-spy, {summary['samples']} samples of the thread holding the GIL")
    print("  self %   function")
    for row in summary["top_self"][:15]:
        print(f"  {row['pct']:6.1f}   {row['frame']}")
    print("  incl %   function")
    for row in summary["top_inclusive"]:
        print(f"  {row['pct']:6.1f}   {row['frame']}")
