"""Schema migrations: versioned, applied once even when several boxes start at once."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from muxd.cluster.records import ClusterError, NumberEntry
from muxd.cluster.schema import MIGRATIONS, SCHEMA_VERSION, current_version
from muxd.cluster.store import ClusterStore

# Each process migrates the database given as argv[1] and prints (before, after).
MIGRATE_SCRIPT = """
import asyncio, sys
from muxd.cluster.store import ClusterStore

async def main():
    async with ClusterStore(sys.argv[1], sys.argv[2]) as store:
        print(*(await store.migrate()))

asyncio.run(main())
"""
PROCESSES = 4
CONNECTIONS = 8
# A box process migrates in well under a second; this only bounds a hung one.
PROCESS_TIMEOUT = 60.0


async def test_concurrent_migrations_end_at_one_version(dsn: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE_SCRIPT,
            dsn,
            f"p{i}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    stores = [ClusterStore(dsn, f"c{i}") for i in range(CONNECTIONS)]
    for s in stores:
        await s.open()
    try:
        results = list(await asyncio.gather(*(s.migrate() for s in stores)))
    finally:
        for s in stores:
            await s.close()
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
        assert proc.returncode == 0, err.decode()
        before, after = map(int, out.split())
        results.append((before, after))
    # Exactly one migrated from nothing; everyone ends at the current version.
    assert sorted(results) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * (
        PROCESSES + CONNECTIONS - 1
    )
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert await current_version(conn) == SCHEMA_VERSION
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert tables == {
        *("schema_version", "boxes", "numbers", "operations", "sales", "pushes"),
        *("fleet_listed", "fleet_published"),
    }


async def test_boxes_upgrading_at_once_add_the_columns_once_and_keep_the_rows(dsn: str) -> None:
    # The database as the muxd before the additions left it, with a box's number.
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            for migration in MIGRATIONS:
                await conn.execute(migration)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)
            await conn.execute(
                "INSERT INTO boxes (name, lease_until) VALUES ('a', now() + interval '1 hour')"
            )
            await conn.execute(
                "INSERT INTO numbers (box, number, port, country, country_id, operator, sellable)"
                " VALUES ('a', '+79001110001', 'port000', '7', 7, '25001', true)"
            )
    finally:
        await conn.close()
    stores = [ClusterStore(dsn, "a" if i == 0 else f"c{i}") for i in range(CONNECTIONS)]
    for s in stores:
        await s.open()
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        # The columns added since are no version of their own: a box of that older muxd
        # still starts on this database.
        assert results == [(SCHEMA_VERSION, SCHEMA_VERSION)] * CONNECTIONS
        async with stores[0]._conn("test") as c:
            assert await current_version(c) == SCHEMA_VERSION == len(MIGRATIONS)
        (number,) = await stores[0].live_numbers()
        assert (number.number, number.port) == ("+79001110001", "port000")
        # The box's next store fills what the new columns hold.
        entry = NumberEntry(
            "+79001110001", "port000", None, "7", 7, "25001", operator_code=25001, date_start=17
        )
        await stores[0].publish_numbers([entry])
        async with stores[0]._conn("test") as c:
            row = await c.fetchrow("SELECT operator_code, date_start FROM numbers")
        assert tuple(row) == (25001, 17)
    finally:
        for s in stores:
            await s.close()


async def test_a_newer_schema_is_refused_with_a_clear_error(dsn: str) -> None:
    async with ClusterStore(dsn, "a") as store:
        assert await store.migrate() == (0, SCHEMA_VERSION)
        async with store._conn("test") as conn:
            await conn.execute("UPDATE schema_version SET version = version + 1")
        with pytest.raises(ClusterError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
            await store.migrate()


def test_bad_box_names_are_refused() -> None:
    for name in ("", "-a", "a b", "a" * 49, "box/1", "ä"):
        with pytest.raises(ClusterError, match="box name"):
            ClusterStore("postgresql://x@127.0.0.1/db", name)
    ClusterStore("postgresql://x@127.0.0.1/db", "rack-1.box_2")
