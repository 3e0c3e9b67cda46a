"""The [cluster] config section and ``muxd cluster status`` against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
import pytest

from muxd.cli import main
from muxd.cluster.store import ClusterStore
from muxd.cluster.throwaway import ThrowawayPostgres
from muxd.config import load
from muxd.errors import ConfigError
from tests.cluster.conftest import fresh_database
from tests.cluster.helpers import entry

BASE = """
state_dir = "/tmp/muxd-state"
[modems]
ports = ["/dev/ttyUSB*"]
[upstream]
url = "https://example.invalid"
api_key = "k"
"""


def write(tmp_path: Path, cluster: str) -> Path:
    path = tmp_path / "muxd.toml"
    path.write_text(BASE + cluster, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


def test_no_cluster_section_is_a_box_alone(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")).cluster is None


def test_cluster_section_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[cluster]\ndatabase = "postgresql://muxd@db.lan/muxd"\n'))
    assert cfg.cluster is not None
    assert cfg.cluster.lease == 15.0
    assert cfg.cluster.box == ""
    assert cfg.cluster.box_name == socket.gethostname()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            '[cluster]\ndatabase = "mysql://u:secret@h/db"\n',
            "cluster.database: expected a postgresql:// URL, got 'mysql://***@h/db'",
        ),
        (
            '[cluster]\ndatabase = "postgresql://h/db"\nbox = "rack 1"\n',
            "cluster.box: expected 1 to 48 letters",
        ),
        ('[cluster]\ndatabase = "postgresql://h/db"\nlease = 1\n', "cluster.lease: Expected"),
        ('[cluster]\nbox = "a"\n', "cluster.database: missing required key"),
        (
            '[cluster]\ndatabase = "postgresql://h/db"\nboxx = "a"\n',
            "cluster.boxx: unknown key (did you mean 'box'?)",
        ),
    ],
)
def test_bad_cluster_keys_are_named(tmp_path: Path, section: str, expected: str) -> None:
    path = write(tmp_path, section)
    message = error_of(path)
    assert message.startswith(f"{path}: {expected}"), message
    assert "secret" not in message


def test_check_config_accepts_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[cluster]\ndatabase = "postgres://u@h:5432/muxd"\nbox = "b1"\n')
    assert main(["check-config", str(path)]) == 0


def _status(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["cluster", "status", "-c", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_boxes_leases_numbers_and_operations(
    tmp_path: Path, postgres: ThrowawayPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    async def setup() -> tuple[str, int]:
        dsn = await fresh_database(postgres)
        async with ClusterStore(dsn, "rack1") as a, ClusterStore(dsn, "rack2") as b:
            await a.migrate()
            for s, n in ((a, "+4915100000001"), (b, "+4915100000002")):
                await s.heartbeat()
                await s.publish_numbers([entry(n), entry(n[:-1] + "9")])
            await b.leave()
            op = await b.reserve(country="germany", operator="any", service="vk")
            assert op is not None
            return dsn, op.activation_id

    dsn, aid = asyncio.run(setup())
    path = write(tmp_path, f'[cluster]\ndatabase = "{dsn}"\nbox = "rack1"\n')
    code, out, err = _status(path, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "2 boxes, 1 live; 2 sellable numbers on live boxes; 1 open operations"
    assert lines[1].split()[:5] == ["BOX", "LEASE", "NUMBERS", "SELLABLE", "OPEN"]
    cells = lines[2].split()
    assert cells[:3] == ["rack1", "*", "live"]
    assert cells[3] in {"15s", "14s", "13s"}  # seconds left of the lease, by the database
    assert cells[4:7] == ["2", "2", "1"]
    assert lines[3].split()[:6] == ["rack2", "lapsed", "0s", "2", "2", "0"]
    assert f"{aid}  +4915100000001  rack1  vk" in out
    code, out, err = _status(path, capsys, "--json")
    data = orjson.loads(out)
    assert [(b["name"], b["live"], b["numbers"]) for b in data["boxes"]] == [
        ("rack1", True, 2),
        ("rack2", False, 2),
    ]
    assert [o["activation_id"] for o in data["open_operations"]] == [aid]


def test_status_of_an_empty_database(
    tmp_path: Path, postgres: ThrowawayPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = asyncio.run(fresh_database(postgres))
    code, out, _ = _status(write(tmp_path, f'[cluster]\ndatabase = "{dsn}"\n'), capsys)
    assert code == 0
    assert "no box has set this database up yet" in out


def test_status_without_cluster_or_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _status(write(tmp_path, ""), capsys)
    assert code == 2
    assert "no [cluster] section" in err
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write(tmp_path, f'[cluster]\ndatabase = "postgresql://u@127.0.0.1:{port}/x"\n')
    code, _, err = _status(path, capsys)
    assert code == 1
    assert err.startswith("cluster database: schema version: ConnectionRefusedError")
