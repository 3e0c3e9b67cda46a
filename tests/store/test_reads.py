"""The journal's reads on their own read-only connection, and the counts the triggers keep,
on a real SQLite file: exact after every kind of write (this process's and another's), after a
crash, unable to write, and never in a commit's way."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muxd.errors import JournalError
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn, admin
from muxd.store.journal import JOURNAL_FILE
from muxd.store.reads import Reads, counts, read_only_uri
from muxd.store.schema import MIGRATIONS, SCHEMA_VERSION, STATE_COUNT_RECOUNT, migrate

SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
READ_AT = SCTS.timestamp() + 3.0
# Bounds a wait that must not happen at all (the writer's busy timeout is 5 s).
PROMPT = 1.0


def part(pdu: str, tpdu_length: int | None, *, index: int, sim: str = "8970101") -> PartIn:
    return PartIn(
        sim=sim,
        port="port000",
        number="+79001234567",
        storage="SM",
        index=index,
        pdu=pdu,
        tpdu_length=tpdu_length,
        received_at=READ_AT,
    )


@contextmanager
def other_process(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of its own, as ``muxd outbox`` or a crashed daemon's next life has."""
    conn = sqlite3.connect(path / JOURNAL_FILE, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def truth(path: Path) -> dict[str, int]:
    """What stats must say: counted row by row."""
    with other_process(path) as conn:
        out = {
            f"messages_{s}": n
            for s, n in conn.execute("SELECT state, count(*) FROM messages GROUP BY state")
        }
        for s, n in conn.execute("SELECT state, count(*) FROM parts GROUP BY state"):
            out[f"parts_{s}"] = n
    return out


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path)
    yield j
    await j.close()


async def test_stats_exact_after_every_kind_of_write(journal: Journal, tmp_path: Path) -> None:
    async def check() -> dict[str, int]:
        stats = await journal.stats()
        assert stats == truth(tmp_path)
        return stats

    assert await check() == {}
    # Inserts: single parts, a multipart set (waiting, then assembled), a part refused.
    singles = [encode_deliver("Bank", f"code {i}", scts=SCTS)[0] for i in range(5)]
    for i, enc in enumerate(singles):
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=i))
    multi = encode_deliver("Shop", "m" * 300, scts=SCTS, ref=7)
    await journal.put_part(part(multi[0].hex, multi[0].tpdu_length, index=10))
    assert (await check())["parts_waiting"] == 1
    await journal.put_part(part(multi[1].hex, multi[1].tpdu_length, index=11))
    bad = await journal.put_part(part("07912143658709F1040B91ZZZZ", None, index=12))
    assert (await check()) == {"messages_pending": 6, "parts_assembled": 7, "parts_parked": 1}
    # Updates by the daemon: delivered, parked, held.
    ids = [m.id for m in await journal.pending(10)]
    await journal.mark_delivered(ids[:3], when=READ_AT)
    await journal.park(ids[3:4], "refused upstream")
    await journal.hold(ids[4:5], "number not listed")
    assert await check() == {
        "messages_delivered": 3,
        "messages_parked": 1,
        "messages_held": 1,
        "messages_pending": 1,
        "parts_assembled": 7,
        "parts_parked": 1,
    }
    # Another process: an operator's replay of messages and of a parked part, and a park.
    assert admin.replay(tmp_path, ids[3:5]) == ids[3:5]
    assert admin.park(tmp_path, ids[5:6]) == ids[5:6]
    admin.replay_parts(tmp_path, [bad.part_id])  # still undecodable: stays parked
    assert (await check())["messages_pending"] == 2
    # Deletes: the prune takes delivered messages with their parts, and old parked parts.
    assert await journal.prune(older_than=READ_AT + 1) == 3
    assert await check() == {"messages_parked": 1, "messages_pending": 2, "parts_assembled": 4}


async def test_stats_exact_after_a_crash_mid_transaction(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    (enc,) = encode_deliver("Bank", "kept", scts=SCTS)
    await journal.put_part(part(enc.hex, enc.tpdu_length, index=1))
    await journal.close()
    # A process dies inside a transaction that changed rows: nothing of it reaches the file,
    # the counts included (the triggers ran in that transaction).
    with other_process(tmp_path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE messages SET state = 'delivered'")
        conn.execute("DELETE FROM parts")
        # Closed without COMMIT: rolled back, as a crash would.
    journal = await Journal.open(tmp_path)
    try:
        assert (
            await journal.stats()
            == truth(tmp_path)
            == {
                "messages_pending": 1,
                "parts_assembled": 1,
            }
        )
    finally:
        await journal.close()


async def test_migration_counts_rows_written_before_it(tmp_path: Path) -> None:
    with other_process(tmp_path) as conn:
        for version in range(SCHEMA_VERSION - 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
        conn.executemany(
            "INSERT INTO messages(sim, port, sender, text, sms_time, received_at, state)"
            " VALUES ('s', 'p', 'Bank', 'old', 1, 1.0, ?)",
            [("pending",), ("delivered",), ("delivered",)],
        )
        conn.execute(
            "INSERT INTO parts(fingerprint, sim, port, storage, idx, pdu, received_at, state)"
            " VALUES ('f', 's', 'p', 'SM', 1, '00', 1.0, 'parked')"
        )
    journal = await Journal.open(tmp_path)
    try:
        assert await journal.stats() == {
            "messages_delivered": 2,
            "messages_pending": 1,
            "parts_parked": 1,
        }
    finally:
        await journal.close()


_STATES = ("pending", "held", "delivered", "parked", "denied")
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.sampled_from(_STATES)),
        st.tuples(st.just("update"), st.sampled_from(_STATES), st.sampled_from(_STATES)),
        st.tuples(st.just("delete"), st.sampled_from(_STATES)),
        st.tuples(st.just("rollback"), st.sampled_from(_STATES)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_counts_follow_any_sequence_of_writes(ops: list[tuple[str, ...]]) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn)
        for op, *args in ops:
            if op == "insert":
                conn.execute(
                    "INSERT INTO messages(sim, port, sender, text, sms_time, received_at, state)"
                    " VALUES ('s', 'p', 'x', 't', 1, 1.0, ?)",
                    (args[0],),
                )
            elif op == "update":  # many rows at once, some not changing state
                conn.execute(
                    "UPDATE messages SET state = ? WHERE state = ? OR id % 3 = 0",
                    (args[1], args[0]),
                )
            elif op == "delete":
                conn.execute(
                    "DELETE FROM messages WHERE id IN"
                    " (SELECT id FROM messages WHERE state = ? LIMIT 2)",
                    (args[0],),
                )
            else:
                conn.execute("BEGIN")
                conn.execute("UPDATE messages SET state = ?", (args[0],))
                conn.execute("DELETE FROM messages WHERE id % 2 = 0")
                conn.execute("ROLLBACK")
        counted = {
            f"messages_{s}": n
            for s, n in conn.execute("SELECT state, count(*) FROM messages GROUP BY state")
        }
        assert counts(conn) == counted
        for statement in STATE_COUNT_RECOUNT:  # a recount finds nothing to correct
            conn.execute(statement)
        assert counts(conn) == counted
    finally:
        conn.close()


async def test_read_connection_cannot_write(journal: Journal, tmp_path: Path) -> None:
    # Even past query_only: the file itself is opened read-only.
    conn = sqlite3.connect(read_only_uri(tmp_path / JOURNAL_FILE), uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM state_counts")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE t (x)")
    finally:
        conn.close()
    reads = await Reads.open(tmp_path / JOURNAL_FILE)
    try:
        assert reads._conn is not None
        write = reads._conn.execute
        with pytest.raises(sqlite3.OperationalError):
            await reads._thread.call(write, "UPDATE state_counts SET n = 0")
    finally:
        await reads.close()


async def test_read_only_uri_quotes_awkward_paths(tmp_path: Path) -> None:
    odd = tmp_path / "state ?#%dir"
    journal = await Journal.open(odd)
    try:
        (enc,) = encode_deliver("Bank", "code", scts=SCTS)
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=1))
        assert await journal.stats() == {"messages_pending": 1, "parts_assembled": 1}
    finally:
        await journal.close()


async def test_a_reader_does_not_block_a_commit(journal: Journal, tmp_path: Path) -> None:
    (first,) = encode_deliver("Bank", "before", scts=SCTS)
    await journal.put_part(part(first.hex, first.tpdu_length, index=1))
    reads = await Reads.open(tmp_path / JOURNAL_FILE)
    try:
        assert reads._conn is not None
        conn = reads._conn
        # A read transaction held open on the read-only connection: a snapshot.
        await reads._thread.call(conn.execute, "BEGIN")
        assert await reads._thread.call(counts, conn) == {
            "messages_pending": 1,
            "parts_assembled": 1,
        }
        (second,) = encode_deliver("Bank", "during", scts=SCTS)
        async with asyncio.timeout(PROMPT):  # the commit does not wait for the reader
            await journal.put_part(part(second.hex, second.tpdu_length, index=2))
        assert await reads._thread.call(counts, conn) == {  # the snapshot holds
            "messages_pending": 1,
            "parts_assembled": 1,
        }
        await reads._thread.call(conn.execute, "COMMIT")
        assert (await reads.stats())["messages_pending"] == 2
    finally:
        await reads.close()


async def test_stats_answer_while_another_process_holds_the_write_lock(
    journal: Journal, tmp_path: Path
) -> None:
    (enc,) = encode_deliver("Bank", "code", scts=SCTS)
    await journal.put_part(part(enc.hex, enc.tpdu_length, index=1))
    with other_process(tmp_path) as conn:
        conn.execute("BEGIN IMMEDIATE")  # `muxd outbox replay` in the middle of a chunk
        conn.execute("UPDATE messages SET state = 'parked'")
        async with asyncio.timeout(PROMPT):
            assert await journal.stats() == {"messages_pending": 1, "parts_assembled": 1}
        conn.execute("COMMIT")
    assert await journal.stats() == {"messages_parked": 1, "parts_assembled": 1}


async def test_stats_after_close_fail_loudly(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.stats()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A small real tmpfs, to be filled by the test."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_stats_answer_while_commits_fail(full_disk: Path) -> None:
    journal = await Journal.open(full_disk / "state")
    try:
        (enc,) = encode_deliver("Bank", "kept", scts=SCTS)
        await journal.put_part(part(enc.hex, enc.tpdu_length, index=0))
        with contextlib.suppress(OSError), (full_disk / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()

        async def store_more() -> None:  # the WAL grows until a page cannot be written
            for i in range(1, 200):
                (enc,) = encode_deliver("Bank", f"code {i} " + "x" * 100, scts=SCTS)
                await journal.put_part(part(enc.hex, enc.tpdu_length, index=i))

        with pytest.raises(JournalError, match="commit failed"):
            await store_more()
        assert journal.broken.is_set()
        # The operator still sees the counts, as of the last commit that made it to disk.
        stats = await journal.stats()
        assert stats["messages_pending"] == stats["parts_assembled"] >= 1
    finally:
        await journal.close()


async def test_stats_answer_while_intake_never_pauses(journal: Journal, tmp_path: Path) -> None:
    """Stats first let the deferred writes queued before them commit, but never wait for the
    commit loop to go idle: with ports storing parts back to back, the answer comes within a
    commit or two, and it includes a delivered mark queued just before it."""
    (enc,) = encode_deliver("Bank", "code 0", scts=SCTS)
    first = await journal.put_part(part(enc.hex, enc.tpdu_length, index=0))
    assert first.message_id is not None
    batch, _ = await journal.take_batch(10)
    assert [m.id for m in batch] == [first.message_id]
    stop = asyncio.Event()
    busy = asyncio.Event()  # the commit loop is busy with no gap from here on
    stored = 0

    async def port(n: int) -> None:
        nonlocal stored
        i = 0
        while not stop.is_set():
            i += 1
            (e,) = encode_deliver("Bank", f"code {n}-{i}", scts=SCTS)
            await journal.put_part(part(e.hex, e.tpdu_length, index=i, sim=f"sim-{n}"))
            stored += 1
            if stored >= 50:
                busy.set()

    ports = [asyncio.create_task(port(n)) for n in range(8)]
    try:
        async with asyncio.timeout(PROMPT):
            await busy.wait()
        await journal.mark_delivered([first.message_id], READ_AT)
        async with asyncio.timeout(PROMPT):
            stats = await journal.stats()
        assert stats["messages_delivered"] == 1
    finally:
        stop.set()
        await asyncio.gather(*ports)
