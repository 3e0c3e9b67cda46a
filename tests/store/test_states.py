"""Message and part states: the move table, the CHECK constraints and the migration that adds
them to a journal file holding data; a part decoded once."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.pdu import decode_pdu, encode_deliver
from muxd.store import Journal, PartIn
from muxd.store.journal import JOURNAL_FILE
from muxd.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from muxd.store.states import MessageState, PartState, move

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
M = MessageState


def test_move_builds_the_update_from_the_allowed_states() -> None:
    assert move(M.PARKED, from_={M.PENDING}, sets="last_error = ?") == (
        "UPDATE messages SET state = 'parked', last_error = ? WHERE id = ? AND state = 'pending'"
    )
    assert move(M.PENDING, from_={M.HELD}, where="number = ?").endswith(
        "WHERE number = ? AND state = 'held'"
    )


@pytest.mark.parametrize(
    ("to", "source"),
    [(M.DELIVERED, M.PARKED), (M.HELD, M.DELIVERED), (M.DENIED, M.DELIVERED)],
)
def test_move_refuses_a_move_not_in_the_table(to: MessageState, source: MessageState) -> None:
    with pytest.raises(ValueError, match=to.value):
        move(to, from_={source})


def old_journal(path: Path) -> None:
    """A journal file as the previous muxd left it (no CHECK), with messages and parts."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:-1]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.execute(
        "INSERT INTO messages(id, sim, port, number, sender, text, sms_time, received_at, state,"
        " attempts, seen_mono) VALUES (7, 's', 'p', '+79001234567', 'Bank', 'code 1', 1, 2.0,"
        " 'pending', 2, 1.0), (9, 's', 'p', '+79001234567', 'Bank', 'code 0', 1, 1.0,"
        " 'delivered', 1, NULL)"
    )
    conn.execute(
        "INSERT INTO parts(id, fingerprint, sim, port, storage, idx, pdu, received_at, state,"
        " message_id) VALUES (3, 'f', 's', 'p', 'SM', 1, '00', 2.0, 'assembled', 7)"
    )
    conn.close()


def indexes(conn: sqlite3.Connection, table: str) -> set[str]:
    return {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND name NOT LIKE 'sqlite_autoindex%'",
            (table,),
        )
    }


async def test_an_old_journal_with_data_migrates_and_refuses_a_bad_state(tmp_path: Path) -> None:
    old_journal(tmp_path / JOURNAL_FILE)
    journal = await Journal.open(tmp_path)
    try:
        assert journal.backlog == 1
        (pending,) = await journal.pending(10)
        assert (pending.id, pending.text) == (7, "code 1")
    finally:
        await journal.close()
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT id, state, attempts FROM messages ORDER BY id").fetchall() == [
            (7, "pending", 2),
            (9, "delivered", 1),
        ]
        assert conn.execute("SELECT id, state, message_id FROM parts").fetchall() == [
            (3, "assembled", 7)
        ]
        assert indexes(conn, "messages") == {"messages_pending"}
        assert indexes(conn, "parts") == {"parts_waiting", "parts_state", "parts_message"}
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE messages SET state = 'sent' WHERE id = 7")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE parts SET state = 'complete' WHERE id = 3")
    finally:
        conn.close()


def test_every_state_is_accepted_by_the_constraint(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None)
    migrate(conn)
    for state in MessageState:
        conn.execute(
            "INSERT INTO messages(sim, port, sender, text, sms_time, received_at, state)"
            " VALUES ('s', 'p', 'x', 't', 1, 1.0, ?)",
            (state.value,),
        )
    for i, pstate in enumerate(PartState):
        conn.execute(
            "INSERT INTO parts(fingerprint, sim, port, storage, idx, pdu, received_at, state)"
            " VALUES (?, 's', 'p', 'SM', 1, '00', 1.0, ?)",
            (f"f{i}", pstate.value),
        )
    conn.close()


async def test_a_part_decodes_once_and_a_set_is_not_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []

    def counting(pdu: str, *, tpdu_length: int | None = None) -> object:
        decoded.append(pdu)
        return decode_pdu(pdu, tpdu_length=tpdu_length)

    monkeypatch.setattr("muxd.store.intake.decode_pdu", counting)
    parts = encode_deliver("Bank", "x" * 400, scts=SCTS, ref=5)
    assert len(parts) == 3

    def put(i: int) -> PartIn:
        enc = parts[i]
        return PartIn(
            sim="8970101", port="port000", number="+79001234567", storage="SM", index=i,
            pdu=enc.hex, tpdu_length=enc.tpdu_length, received_at=SCTS.timestamp() + 3,
        )  # fmt: skip

    journal = await Journal.open(tmp_path)
    try:
        for i in range(2):
            assert (await journal.put_part(put(i))).state == "waiting"
    finally:
        await journal.close()
    assert len(decoded) == 2  # each part once, before its transaction
    # After a restart the waiting parts are decoded once from their stored PDU.
    decoded.clear()
    journal = await Journal.open(tmp_path)
    try:
        assert (await journal.put_part(put(2))).state == "assembled"
        (msg,) = await journal.pending(10)
        assert msg.text == "x" * 400
    finally:
        await journal.close()
    assert len(decoded) == 3
