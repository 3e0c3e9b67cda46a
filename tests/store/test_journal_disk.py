"""The journal on a real, small tmpfs that fills up: intake fails loudly, then recovers."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.errors import JournalError
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
FS_SIZE = "2m"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    # The suppress is outermost: closing the file flushes what the last write left buffered,
    # which fails with ENOSPC too on a full disk.
    with contextlib.suppress(OSError), path.open("wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def part(i: int) -> PartIn:
    (enc,) = encode_deliver("Bank", f"code {i} " + "x" * 100, scts=SCTS)
    return PartIn(
        sim="s",
        port="port000",
        number="+79001234567",
        storage="SM",
        index=i,
        pdu=enc.hex,
        tpdu_length=enc.tpdu_length,
        received_at=1.0,
    )


async def test_full_disk_fails_puts_then_recovers(small_fs: Path) -> None:
    journal = await Journal.open(small_fs / "state")
    try:
        await journal.put_part(part(0))
        filler = small_fs / "filler"
        fill(filler)
        failure: JournalError | None = None
        for i in range(1, 200):  # the WAL grows until a page can't be written
            try:
                await journal.put_part(part(i))
            except JournalError as exc:
                failure = exc
                break
        assert failure is not None
        assert "commit failed" in str(failure)
        assert journal.broken.is_set()
        # While broken, nothing is accepted (so nothing can be deleted from a modem).
        with pytest.raises(JournalError):
            await journal.put_part(part(1000))
        assert not await journal.probe()
        filler.unlink()
        assert await journal.probe()
        assert not journal.broken.is_set()
        result = await journal.put_part(part(2000))
        assert result.new
        assert result.message_id is not None
    finally:
        await journal.close()
