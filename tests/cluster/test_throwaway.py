"""The throwaway PostgreSQL itself: found off PATH, run unprivileged, stopped and restarted."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from muxd.cluster import throwaway
from muxd.cluster.throwaway import PostgresMissing, ThrowawayPostgres, find_binary


def test_binaries_are_found_in_debians_directory_off_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for version in ("9.6", "15", "16"):
        bin_dir = tmp_path / "lib" / "postgresql" / version / "bin"
        bin_dir.mkdir(parents=True)
        tool = bin_dir / "initdb"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(throwaway, "DEBIAN_BIN_GLOB", f"{tmp_path}/lib/postgresql/*/bin")
    assert find_binary("initdb") == f"{tmp_path}/lib/postgresql/16/bin/initdb"
    with pytest.raises(PostgresMissing, match="postgresql"):
        find_binary("pg_ctl")


async def test_server_runs_unprivileged_and_survives_a_restart(
    private_postgres: ThrowawayPostgres,
) -> None:
    owners = {os.stat(f"/proc/{pid}").st_uid for pid in private_postgres.pids()}
    if os.geteuid() == 0:  # PostgreSQL refuses root: the harness hands it to a service user
        user = throwaway._service_user()
        assert user is not None
        assert user.pw_name in throwaway.SERVICE_USERS
        assert owners == {user.pw_uid}
    conn = await asyncpg.connect(private_postgres.dsn)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
    await conn.close()
    private_postgres.stop()
    assert private_postgres.pids() == []
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(private_postgres.dsn, timeout=2)
    private_postgres.start()
    conn = await asyncpg.connect(private_postgres.dsn)
    assert await conn.fetchval("SELECT x FROM kept") == 7
    await conn.close()
    root = private_postgres.root
    private_postgres.close()
    assert not root.exists()
