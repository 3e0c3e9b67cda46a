"""``muxd demo`` as a user runs it: Ctrl-C prints the tally and removes the temp directory."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

# Bounds only: the demo is up within seconds; these stop a hang on a loaded machine.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    async with asyncio.timeout(START_TIMEOUT):
        while needle not in "".join(seen):
            chunk = await stream.read(4096)
            if not chunk:
                raise AssertionError(f"demo ended before {needle!r}: {''.join(seen)}")
            seen.append(chunk.decode())


@pytest.mark.parametrize("keep", [False, True])
async def test_ctrl_c_prints_the_tally_and_cleans_up(keep: bool) -> None:
    argv = [sys.executable, "-m", "muxd", "demo", "--ports", "2", "--rate", "2"]
    proc = await asyncio.create_subprocess_exec(
        *argv, *(["--keep"] if keep else []), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        await _read_until(proc.stdout, "Ctrl-C stops.", seen)
        await _read_until(proc.stdout, "ports up", seen)
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(STOP_TIMEOUT):
            rest = await proc.stdout.read()
            assert await proc.wait() == 0
    out = "".join(seen) + rest.decode()
    match = re.search(r"muxd demo in (\S+)", out)
    assert match is not None
    workdir = Path(match.group(1))
    assert re.search(r"stopped: ports up \d+/2 .* SMS injected \d+", out), out
    if keep:
        assert f"kept {workdir}" in out
        assert (workdir / "state").is_dir()
        shutil.rmtree(workdir)
    else:
        assert f"removed {workdir}" in out
        assert not workdir.exists()  # noqa: ASYNC240 - one stat after the process ended
