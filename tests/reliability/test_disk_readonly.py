"""A journal on a read-only filesystem (a tmpfs mounted ``ro`` by the test): ``muxd run``
refuses to start, with one line that names the journal and the reason; nothing is touched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.tmpfs import mounted_tmpfs

# Bound of the daemon's start-up failure (a loaded CI machine).
RUN_TIMEOUT = 60.0


@pytest.fixture
def readonly_fs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "state", "ro,size=1m") as mnt:
        yield mnt


def test_read_only_journal_refuses_to_start_naming_path_and_reason(
    tmp_path: Path, readonly_fs: Path
) -> None:
    (tmp_path / "dev").mkdir()
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{readonly_fs}"\n'
        f'[modems]\nports = ["{tmp_path / "dev" / "port*"}"]\n'
        '[upstream]\nurl = "http://127.0.0.1:9"\napi_key = "k"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "muxd", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "CRITICAL" in line]
    assert len(lines) == 1, proc.stderr
    assert str(readonly_fs / "journal.sqlite3") in lines[0]
    assert "Read-only file system" in lines[0]
    assert "Traceback" not in proc.stderr
    assert list(readonly_fs.iterdir()) == []
