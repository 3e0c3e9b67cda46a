"""The cluster's tables in PostgreSQL and their versioned migrations.

Every box runs :func:`migrate` when it connects. The whole run is one transaction holding a
transaction-level advisory lock, so boxes starting at once apply each migration exactly once:
the first one takes the lock and migrates, the others wait for it, then find the schema current.
``schema_version`` holds one row, the number of migrations applied. A database migrated by a
newer muxd (more migrations than this one knows) is refused with a clear error rather than
used by code that does not know its tables.

Tables:

- ``boxes``: one row per box name; ``lease_until`` is renewed by the box's heartbeat and read
  against the database's own clock (``now()``), never a box's wall clock.
- ``numbers``: the numbers each box offers, replaced by that box as a whole; ``last_used``
  orders GET_NUMBER's choice (least recently used first) and survives the replacement.
  ``operator_code`` (MCC+MNC) and ``date_start`` (since when the SIM is in its port) are what
  the v2 list sends of a number, as one box alone sends them.
  ``busy`` mirrors "in an open operation" on the row GET_NUMBER locks, so that a reservation
  racing another one re-checks it on the row's newest version (PostgreSQL re-evaluates the
  conditions on the locked row itself) instead of colliding on the unique index.
- ``operations``: v1 operations; ``activation_id`` is an identity column (a sequence: never
  handed out twice, never reused, even after a rollback). A unique partial index keeps one
  open operation per number across all boxes. ``request`` is the answering box's token for the
  GET_NUMBER, to release an operation whose answer never left (see ``ClusterStore.abandon``).
- ``sales``: (number, service) pairs closed as sold; not offered for that service again.
- ``pushes``: which box pushes the SMS of which operation (the box holding the SIM).
- ``fleet_listed`` and ``fleet_published`` (v2 ``list`` mode): the numbers of the last list
  Onlinesim accepted from the publishing box, each with its box, and which box recorded it and
  when (renewed while it holds the publisher lock). A box delivers SMS only for its numbers on
  that list, so an SMS never meets ``NO_NUMBER`` for a number stored but not yet published.
  ``republish``: a box whose SMS met ``NO_NUMBER`` all the same asks the holder for a new
  publication (Onlinesim lost a number, or an older list landed after the recorded one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    AnyConnection: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    )

# An arbitrary 64-bit key for the advisory lock serialising migrations ("muxdmigr").
MIGRATION_LOCK: Final = 0x6D7578646D696772

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: boxes and the numbers they offer.
    """
    CREATE TABLE boxes (
        name text PRIMARY KEY,
        lease_until timestamptz NOT NULL,
        started timestamptz NOT NULL DEFAULT now(),
        version text NOT NULL DEFAULT ''
    );
    CREATE TABLE numbers (
        box text NOT NULL REFERENCES boxes(name) ON DELETE CASCADE,
        number text NOT NULL,
        port text NOT NULL,
        iccid text,
        country text NOT NULL,
        country_id integer,
        operator text NOT NULL,
        sellable boolean NOT NULL,
        updated timestamptz NOT NULL DEFAULT now(),
        last_used timestamptz,
        busy boolean NOT NULL DEFAULT false,
        PRIMARY KEY (box, number)
    );
    CREATE INDEX numbers_number ON numbers (number);
    CREATE INDEX numbers_pick ON numbers (country, last_used NULLS FIRST, number)
        WHERE sellable AND NOT busy;
    """,
    # 2: v1 operations with global activation ids, sales, push assignments.
    """
    CREATE TABLE operations (
        activation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        number text NOT NULL,
        box text NOT NULL,
        service text NOT NULL,
        country text NOT NULL,
        operator text NOT NULL,
        sum double precision,
        rent boolean NOT NULL,
        state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'finished', 'expired')),
        status smallint,
        finish_sum double precision,
        created timestamptz NOT NULL DEFAULT now(),
        expires timestamptz,
        finished timestamptz,
        answered_by text NOT NULL,
        request uuid UNIQUE
    );
    CREATE UNIQUE INDEX operations_open_number ON operations (number) WHERE state = 'open';
    CREATE INDEX operations_open_expires ON operations (expires) WHERE state = 'open';
    CREATE TABLE sales (
        number text NOT NULL,
        service text NOT NULL,
        activation_id bigint NOT NULL REFERENCES operations(activation_id),
        sold timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (number, service)
    );
    CREATE TABLE pushes (
        -- No foreign key: the reservation inserts both rows in one statement, and the key's
        -- check would cost a quarter of it.
        activation_id bigint PRIMARY KEY,
        box text NOT NULL,
        assigned timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX pushes_box ON pushes (box);
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

# Additions a box of an older muxd lives with (nullable columns it neither reads nor writes):
# made where missing, under the migration lock, without a version of their own. A version
# would stop every older box that restarts during a rolling upgrade ("schema too new"), for
# columns it can ignore. (table, column, type)
ADDITIONS: Final = (
    # What v2's list says of each number besides its country: the SIM's operator code
    # (MCC+MNC) and since when the SIM is in its port (UNIX seconds).
    ("numbers", "operator_code", "integer"),
    ("numbers", "date_start", "bigint"),
)
# Tables an older muxd neither reads nor writes: created where missing, under the same lock and
# for the same reason as ADDITIONS.
TABLE_ADDITIONS: Final = (
    "CREATE TABLE IF NOT EXISTS fleet_listed (number text PRIMARY KEY, box text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fleet_published (id smallint PRIMARY KEY CHECK (id = 1),"
    " box text NOT NULL, at timestamptz NOT NULL, republish boolean NOT NULL DEFAULT false)",
)
# An addition waits this long at most for the table's lock (a long transaction of another
# box must not hold every box's reservations up behind the ALTER); retried at the next start.
ADDITION_LOCK_TIMEOUT: Final = "2s"

_MISSING = (
    "SELECT a.t, a.c FROM unnest($1::text[], $2::text[]) AS a(t, c) WHERE NOT EXISTS ("
    " SELECT 1 FROM information_schema.columns i WHERE i.table_schema = current_schema()"
    " AND i.table_name = a.t AND i.column_name = a.c)"
)


class SchemaTooNew(Exception):
    """The database was migrated by a newer muxd."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the cluster database has schema version {found}; this muxd knows up to"
            f" {SCHEMA_VERSION}: upgrade muxd on this box"
        )
        self.found = found


async def current_version(conn: AnyConnection) -> int:
    """The schema version of the database (0: never migrated)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(value or 0)


async def migrate(conn: AnyConnection, timeout: float) -> tuple[int, int]:
    """Bring the schema to :data:`SCHEMA_VERSION`; return (version before, version after).

    Safe with any number of boxes calling it at once (one transaction under an advisory lock).
    ``timeout`` bounds each statement, waiting for another box's migration included.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=timeout)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)", timeout=timeout
        )
        before = int(
            await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM schema_version", timeout=timeout
            )
        )
        if before > SCHEMA_VERSION:
            raise SchemaTooNew(before)
        for version in range(before + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[version - 1], timeout=timeout)
        if before < SCHEMA_VERSION:
            await conn.execute("DELETE FROM schema_version", timeout=timeout)
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION, timeout=timeout
            )
        missing = await conn.fetch(
            _MISSING, [t for t, _c, _k in ADDITIONS], [c for _t, c, _k in ADDITIONS]
        )
        if missing:
            kinds = {(t, c): k for t, c, k in ADDITIONS}
            await conn.execute(f"SET LOCAL lock_timeout = '{ADDITION_LOCK_TIMEOUT}'")
            for table, column in missing:
                await conn.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}"
                    f" {kinds[(table, column)]}",
                    timeout=timeout,
                )
        tables = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::text[]) t WHERE to_regclass(t) IS NULL",
            ["fleet_listed", "fleet_published"],
        )
        if tables:
            for statement in TABLE_ADDITIONS:
                await conn.execute(statement, timeout=timeout)
        return before, SCHEMA_VERSION
