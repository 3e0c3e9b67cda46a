"""`muxd outbox` on a real journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.cli import main
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    journal = await Journal.open(state)
    try:
        for i in range(3):
            (enc,) = encode_deliver("Bank", f"code {i}", scts=SCTS)
            await journal.put_part(
                PartIn(
                    sim="s",
                    port="port000",
                    number="+79001234567",
                    storage="SM",
                    index=i,
                    pdu=enc.hex,
                    tpdu_length=enc.tpdu_length,
                    received_at=1.0,
                )
            )
        first, *_ = await journal.pending(10)
        await journal.park([first.id], "refused by upstream: HTTP 400 ERROR_PARAMS")
    finally:
        await journal.close()
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{state}"\n[modems]\nports = ["/dev/null*"]\n'
        '[upstream]\nurl = "http://127.0.0.1:1"\napi_key = "k"\n',
        encoding="utf-8",
    )
    return cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_stats_list_replay_park(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "outbox", "-c", str(config), "stats")
    assert code == 0
    stats = json.loads(out)
    assert (stats["messages_pending"], stats["messages_parked"]) == (2, 1)

    code, out = run(capsys, "outbox", "-c", str(config), "list", "--state", "parked")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["text"] == "code 0"
    assert "ERROR_PARAMS" in row["last_error"]

    code, out = run(capsys, "outbox", "-c", str(config), "replay", str(row["id"]), "999")
    assert json.loads(out) == {"replayed": [row["id"]]}
    code, out = run(capsys, "outbox", "-c", str(config), "park", str(row["id"] + 1))
    assert json.loads(out) == {"parked": [row["id"] + 1]}
    _, out = run(capsys, "outbox", "-c", str(config), "stats")
    stats = json.loads(out)
    assert (stats["messages_pending"], stats["messages_parked"]) == (2, 1)


def test_missing_journal_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path / "nowhere"}"\n[modems]\nports = ["x"]\n'
        '[upstream]\nurl = "http://127.0.0.1:1"\napi_key = "k"\n',
        encoding="utf-8",
    )
    assert main(["outbox", "-c", str(cfg), "stats"]) == 1
    assert "no journal here" in capsys.readouterr().err
