"""Readiness (v2) counts the upstream's silence on the monotonic clock: a wall-clock step (NTP
on a box without a real-time clock, an operator's ``date -s``) neither makes a daemon that just
reached Onlinesim unready, nor hides an upstream silent for longer than allowed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from muxd.app import Daemon
from muxd.config import load
from muxd.daemon_status import UPSTREAM_STALE
from muxd.fleet import Fleet
from muxd.ports import PartRead, PartStored, PortInfo, PortStatus

CONFIG = """
state_dir = "{state}"
[modems]
ports = ["/dev/ttyUSB*"]
[upstream]
url = "https://example.invalid"
api_key = "k"
"""


async def _sink(_part: PartRead, /) -> PartStored:
    raise AssertionError("nothing is read in these tests")


def daemon_with_a_ready_port(tmp_path: Path) -> Daemon:
    (tmp_path / "muxd.toml").write_text(CONFIG.format(state=tmp_path), encoding="utf-8")
    daemon = Daemon(load(tmp_path / "muxd.toml"), registry=CollectorRegistry())
    fleet = Fleet([], baudrate=115200, sink=_sink, numbers={}, sweep_interval=60.0,
                  rescan_interval=60.0)  # fmt: skip
    fleet.ports["/dev/x"] = PortInfo(name="x", path="/dev/x", status=PortStatus.READY)
    daemon.fleet = fleet
    return daemon


def test_a_wall_clock_step_forward_does_not_make_the_daemon_unready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_with_a_ready_port(tmp_path)
    daemon.sinks.observe_upstream("checkWork", "ok", 0.1)
    assert daemon.status.ready() is None
    stepped = time.time() + 3600.0  # the wall clock jumps an hour ahead; no time passes
    monkeypatch.setattr(time, "time", lambda: stepped)
    assert daemon.status.ready() is None


def test_a_wall_clock_step_back_does_not_hide_a_silent_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = daemon_with_a_ready_port(tmp_path)
    daemon.sinks.observe_upstream("checkWork", "ok", 0.1)
    # Longer than allowed passes without an answer, while the wall clock is set back an hour.
    wall, mono = time.time() - 3600.0 + UPSTREAM_STALE + 60, time.monotonic() + UPSTREAM_STALE + 60
    monkeypatch.setattr(time, "time", lambda: wall)
    monkeypatch.setattr(time, "monotonic", lambda: mono)
    assert daemon.status.ready() == "upstream not reached recently"
