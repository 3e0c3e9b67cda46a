"""`muxd outbox` on a real journal."""

from __future__ import annotations

import json
import sqlite3
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


OLD_ERROR = "timestamp 62310021436500 invalid: month must be in 1..12"


@pytest.fixture
async def parked_parts(tmp_path: Path) -> Path:
    """A journal with two parked parts: garbage, and an SMS whose month-13 stamp an older
    decoder refused (stored as that version did)."""
    state = tmp_path / "state"
    journal = await Journal.open(state)
    try:
        garbage = await journal.put_part(
            PartIn("s", "port003", "+79001234567", "SM", 4, "07912143658709F1040B91ZZ", None, 2.0)
        )
        assert garbage.state == "parked"
    finally:
        await journal.close()
    (enc,) = encode_deliver("Bank", "code 777", scts=SCTS)
    month_13 = enc.hex.replace("62115221000000", "62310021436500")
    conn = sqlite3.connect(state / "journal.sqlite3")
    with conn:
        conn.execute(
            "INSERT INTO parts(fingerprint, sim, port, number, storage, idx, pdu, tpdu_length,"
            " received_at, state, error) VALUES ('fp-old', 's', 'port007', '+79001234567', 'ME',"
            " 12, ?, ?, ?, 'parked', ?)",
            (month_13, enc.tpdu_length, SCTS.timestamp() + 9, OLD_ERROR),
        )
    conn.close()
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{state}"\n[modems]\nports = ["/dev/null*"]\n'
        '[upstream]\nurl = "http://127.0.0.1:1"\napi_key = "k"\n',
        encoding="utf-8",
    )
    return cfg


def test_parked_parts_are_listed_decoded_and_replayed(
    parked_parts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(parked_parts)
    code, out = run(capsys, "outbox", "-c", cfg, "parts")
    assert code == 0
    old, garbage = [json.loads(line) for line in out.splitlines()]
    assert (old["port"], old["sim"], old["storage"], old["index"]) == ("port007", "s", "ME", 12)
    assert old["error"] == OLD_ERROR
    assert old["received"] == "2026-11-25T12:00:09+00:00"
    assert garbage["port"] == "port003"
    assert "pdu" not in old

    code, out = run(capsys, "outbox", "-c", cfg, "parts", "--decode")
    old, garbage = [json.loads(line) for line in out.splitlines()]
    assert old["now"] == {
        "decodes": True,
        "type": "deliver",
        "sender": "Bank",
        "timestamp": None,
        "concat": None,
        "text": "code 777",
    }
    assert garbage["now"]["decodes"] is False

    assert run(capsys, "outbox", "-c", cfg, "parts", "replay")[0] == 2  # no ID, no --all
    code, out = run(capsys, "outbox", "-c", cfg, "parts", "replay", "--all")
    assert code == 0
    replayed = json.loads(out)["replayed"]
    assert [(r["id"], r["state"]) for r in replayed] == [
        (garbage["id"], "parked"),
        (old["id"], "assembled"),
    ]
    _, out = run(capsys, "outbox", "-c", cfg, "list", "--state", "pending")
    (msg,) = [json.loads(line) for line in out.splitlines()]
    assert (msg["id"], msg["text"]) == (replayed[1]["message_id"], "code 777")
    _, out = run(capsys, "outbox", "-c", cfg, "parts")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [garbage["id"]]
    # Replaying again changes nothing: the forwarded part is no longer parked.
    _, out = run(capsys, "outbox", "-c", cfg, "parts", "replay", str(old["id"]))
    assert json.loads(out) == {"replayed": []}


async def test_parked_parts_are_pruned_with_the_retention(parked_parts: Path) -> None:
    state = parked_parts.parent / "state"
    journal = await Journal.open(state)
    try:
        assert (await journal.stats())["parts_parked"] == 2
        await journal.prune(older_than=SCTS.timestamp())  # the garbage part was read at 2.0
        assert (await journal.stats())["parts_parked"] == 1
        await journal.prune(older_than=SCTS.timestamp() + 10)
        assert "parts_parked" not in await journal.stats()
    finally:
        await journal.close()
