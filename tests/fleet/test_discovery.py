"""Port discovery: what each glob matched is logged once at start and again only on change."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from muxd.fleet import Fleet, discover, discover_each
from muxd.ports import PartRead, PartStored, PortInfo, PortStatus


async def _never(_part: PartRead, /) -> PartStored:
    raise AssertionError("nothing is read in these tests")


def _fleet(patterns: list[str], on_change: Callable[[PortInfo], None] | None = None) -> Fleet:
    return Fleet(
        patterns,
        baudrate=115200,
        sink=_never,
        numbers={},
        sweep_interval=60.0,
        rescan_interval=60.0,
        on_change=on_change,
    )


async def _stop(fleet: Fleet) -> None:
    tasks = list(fleet._tasks.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_urls_match_themselves_and_globs_match_files(tmp_path: Path) -> None:
    (tmp_path / "ttyUSB0").touch()
    (tmp_path / "ttyUSB1").touch()
    patterns = [str(tmp_path / "ttyUSB*"), "socket://127.0.0.1:1", str(tmp_path / "none*")]
    each = discover_each(patterns)
    assert each[patterns[0]] == [str(tmp_path / "ttyUSB0"), str(tmp_path / "ttyUSB1")]
    assert each[patterns[1]] == ["socket://127.0.0.1:1"]
    assert each[patterns[2]] == []
    assert discover(patterns) == sorted([*each[patterns[0]], "socket://127.0.0.1:1"])


async def test_each_glob_is_logged_once_and_an_empty_one_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxd.fleet")
    (tmp_path / "ttyUSB0").touch()
    matching, empty = str(tmp_path / "ttyUSB*"), str(tmp_path / "ttyACM*")
    fleet = _fleet([matching, empty])
    try:
        fleet.rescan()
        fleet.rescan()  # nothing changed: nothing logged
        lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "muxd.fleet"]
        assert (logging.INFO, f"modems.ports {matching!r} matches 1 port(s)") in lines
        assert (logging.WARNING, f"modems.ports {empty!r} matches no port") in lines
        assert sum("matches" in m for _, m in lines) == 2
        caplog.clear()
        (tmp_path / "ttyUSB1").touch()  # hot-plug
        fleet.rescan()
        changes = [r.getMessage() for r in caplog.records if "matches" in r.getMessage()]
        assert changes == [f"modems.ports {matching!r} now matches 2 port(s), was 1"]
    finally:
        await _stop(fleet)


async def test_a_socket_port_that_refuses_is_retried_not_marked_gone() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        backing_off = asyncio.Event()

        def on_change(info: PortInfo) -> None:
            if info.status is PortStatus.BACKOFF:
                backing_off.set()

        fleet = _fleet([url], on_change)
        try:
            fleet.rescan()
            async with asyncio.timeout(10):
                await backing_off.wait()
            assert not fleet._tasks[url].done()  # still supervised, not given up as vanished
        finally:
            await _stop(fleet)
