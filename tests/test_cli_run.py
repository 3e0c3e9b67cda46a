"""``muxd run`` as a user meets it: a taken listen address is one line, not a traceback."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

# A bound only: muxd fails at once when its address is taken.
EXIT_TIMEOUT = 60.0


async def test_http_listen_in_use_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "muxd.toml"
        config.write_text(
            f'state_dir = "{tmp_path / "state"}"\n'
            f'[modems]\nports = ["{tmp_path}/none*"]\n'
            '[upstream]\nurl = "http://127.0.0.1:9"\napi_key = "k"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "muxd",
            "run",
            "-c",
            str(config),
            "--no-uvloop",
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(EXIT_TIMEOUT):
            _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 2
    assert "Traceback" not in text
    assert (
        text.strip()
        .splitlines()[-1]
        .startswith(f"{config}: http.listen: cannot listen on 127.0.0.1:{port}: ")
    )
