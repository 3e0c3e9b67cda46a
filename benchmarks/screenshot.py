"""A screenshot of the status page of a running ``muxd demo``, for the README.

    python -m benchmarks.screenshot OUT.png [--ports 16] [--rate 8] [--settle 6]

Starts ``muxd demo`` as its own process (state and pty links in a temporary directory that is
removed afterwards), waits until SMS are being forwarded, lets the page's rates and ages settle,
and has headless Chromium (Debian's ``chromium``; ``.ci/install-ops.sh`` installs it) save a
PNG of the page. Exit status 0 on success, 1 when a step fails, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with .ci/install-ops.sh (Debian package 'chromium')"
# Headless and quiet: no sandbox (root in CI), no GPU, and none of the background requests
# (component updates, sync, QUIC probes) that would go out on the network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW_SIZE = "1400,900"
# Virtual time the page gets to fetch the API and render (it polls every 2 s).
VIRTUAL_TIME_BUDGET_MS = 5000

# Bounded waits for the external processes.
DEMO_START_TIMEOUT = 60.0  # until the demo prints its status URL
FLOW_TIMEOUT = 60.0  # until /api/totals shows forwarded SMS
CHROMIUM_TIMEOUT = 60.0  # one Chromium run
HTTP_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0
POLL = 0.25

STATUS_LINE = re.compile(r"^\s*status page\s+(http://127\.0\.0\.1:\d+/)\s*$")


class Failure(Exception):
    pass


def find_chromium() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def start_demo(
    ports: int, rate: float, workdir: Path
) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    argv = [sys.executable, "-m", "muxd", "demo", "--ports", str(ports), "--rate", f"{rate:g}"]
    argv += ["--duration", "600"]  # stopped by us long before
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="read-demo", daemon=True).start()
    return proc, lines


def wait_for_url(lines: queue.Queue[str | None]) -> str:
    deadline = time.monotonic() + DEMO_START_TIMEOUT
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise Failure(f"no status URL from muxd demo within {DEMO_START_TIMEOUT:g} s") from None
        if line is None:
            raise Failure("muxd demo exited before printing its status URL:\n" + "\n".join(seen))
        seen.append(line)
        match = STATUS_LINE.match(line)
        if match:
            return match[1]


def wait_for_flow(url: str, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + FLOW_TIMEOUT
    totals: dict[str, object] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"muxd demo exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "api/totals", timeout=HTTP_TIMEOUT) as resp:
                totals = json.load(resp)
        except OSError:
            totals = {}
        forwarded = totals.get("forwarded")
        if isinstance(forwarded, int) and forwarded > 0:
            return totals
        time.sleep(POLL)
    raise Failure(f"no SMS forwarded within {FLOW_TIMEOUT:g} s (last totals: {totals})")


def screenshot(chromium: str, url: str, out: Path, profile: Path) -> None:
    argv = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW_SIZE}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        f"--screenshot={out}",
        url,
    ]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise Failure(f"chromium took longer than {CHROMIUM_TIMEOUT:g} s") from None
    if result.returncode != 0 or not out.is_file():
        raise Failure(f"chromium failed ({result.returncode}):\n{result.stderr[-2000:]}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the demo stops cleanly on Ctrl-C
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    if proc.stdout is not None:
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--ports", type=int, default=16)
    parser.add_argument("--rate", type=float, default=8.0, help="SMS per second to inject")
    parser.add_argument(
        "--settle", type=float, default=6.0, help="seconds of flow before the screenshot"
    )
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        print(f"screenshot: chromium not found: {INSTALL_HINT}", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="muxd-screenshot-") as tmp:
        workdir = Path(tmp)
        proc, lines = start_demo(args.ports, args.rate, workdir)
        try:
            url = wait_for_url(lines)
            wait_for_flow(url, proc)
            time.sleep(args.settle)  # rates over a few polls, ages of a few seconds
            profile = workdir / "chromium-profile"
            profile.mkdir()
            screenshot(chromium, url, out, profile)
        except Failure as exc:
            print(f"screenshot: {exc}", file=sys.stderr)
            return 1
        finally:
            stop(proc)
    print(f"screenshot: {out} ({out.stat().st_size // 1024} kB) of {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
