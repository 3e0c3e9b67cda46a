"""A throwaway PostgreSQL for the cluster tests: one server per session, one fresh database
per test (so tests never see each other's rows), and a private server for the tests that stop
or freeze it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import PostgresMissing, ThrowawayPostgres

_DATABASES = itertools.count(1)


def _server() -> ThrowawayPostgres:
    try:
        return ThrowawayPostgres()
    except PostgresMissing as exc:  # fail, never skip: CI installs it (.ci/install-ops.sh)
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    with _server() as pg:
        yield pg


@pytest.fixture
def private_postgres() -> Iterator[ThrowawayPostgres]:
    """A server of the test's own, which it may stop, restart or freeze."""
    with _server() as pg:
        yield pg


async def fresh_database(pg: ThrowawayPostgres) -> str:
    """CREATE DATABASE under a new name; returns its DSN."""
    name = f"t{next(_DATABASES)}"
    conn = await asyncpg.connect(pg.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return pg.dsn_for(name)


@pytest.fixture
async def dsn(postgres: ThrowawayPostgres) -> str:
    return await fresh_database(postgres)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[ClusterStore]:
    """Box "a", migrated, lease registered."""
    async with ClusterStore(dsn, "a") as s:
        await s.migrate()
        await s.heartbeat()
        yield s
