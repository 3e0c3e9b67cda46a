"""Schema migrations: versioned, applied once even when several boxes start at once."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from muxd.cluster.records import ClusterError
from muxd.cluster.schema import SCHEMA_VERSION, current_version
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
    assert tables == {"schema_version", "boxes", "numbers", "operations", "sales", "pushes"}


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
