"""The shipped systemd unit: notify + watchdog, resource caps, and its sandbox rating."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "muxd.service"
# `systemd-analyze security` rated the unit 1.6 before the watchdog and caps; it may only improve.
MAX_EXPOSURE = 1.6


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_notify_with_a_watchdog_and_caps() -> None:
    s = _settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert float(s["WatchdogSec"][0]) > 0
    assert s["UMask"] == ["0077"]
    assert s["PrivateMounts"] == ["yes"]
    assert "MemoryMax" in s
    assert "TasksMax" in s


def test_systemd_analyze_security_rating(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze missing: run .ci/install-ops.sh (make ops-tools)"
    unit = tmp_path / "muxd.service"
    shutil.copy(UNIT, unit)
    run = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"Overall exposure level for muxd\.service: ([0-9.]+)", run.stdout)
    assert match is not None, run.stdout + run.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE
