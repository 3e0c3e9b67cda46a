"""``muxd cluster status -c FILE``: the boxes, their leases, numbers and open operations, read
from the cluster's database without changing it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from muxd.errors import ConfigError, MuxdError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# Open operations listed one per line; past this, only their count.
OPERATIONS_SHOWN = 50


async def gather(database: str, box: str, lease: float) -> dict[str, Any]:
    """Everything the status shows, as plain data (also the ``--json`` output)."""
    from muxd.cluster.schema import SCHEMA_VERSION
    from muxd.cluster.store import ClusterStore

    async with ClusterStore(database, box, lease=lease) as store:
        version = await store.schema_version()
        if version < SCHEMA_VERSION:
            return {"schema_version": version, "boxes": [], "open_operations": []}
        boxes = await store.boxes()
        ops = await store.open_operations(None)
    return {
        "schema_version": version,
        "boxes": [
            {
                "name": b.name,
                "live": b.live,
                "lease_left": round(b.lease_left, 1),
                "version": b.version,
                "started": b.started.isoformat(),
                "numbers": b.numbers,
                "sellable": b.sellable,
                "open_operations": b.open_operations,
            }
            for b in boxes
        ],
        "open_operations": [
            {
                "activation_id": o.activation_id,
                "number": o.number,
                "box": o.box,
                "service": o.service,
                "created": o.created.isoformat(),
                "expires": None if o.expires is None else o.expires.isoformat(),
            }
            for o in ops
        ],
    }


def render(status: dict[str, Any], this_box: str) -> str:
    from muxd.cluster.schema import SCHEMA_VERSION

    lines: list[str] = []
    if status["schema_version"] < SCHEMA_VERSION:
        lines.append(
            f"schema version {status['schema_version']} (current {SCHEMA_VERSION}):"
            " no box has set this database up yet"
        )
        return "\n".join(lines) + "\n"
    boxes = status["boxes"]
    live = [b for b in boxes if b["live"]]
    lines.append(
        f"{len(boxes)} boxes, {len(live)} live; "
        f"{sum(b['sellable'] for b in live)} sellable numbers on live boxes; "
        f"{len(status['open_operations'])} open operations"
    )
    header = ("BOX", "LEASE", "NUMBERS", "SELLABLE", "OPEN OPS", "VERSION", "STARTED (UTC)")
    rows = [header]
    for b in boxes:
        lease = f"live {b['lease_left']:.0f}s" if b["live"] else f"lapsed {-b['lease_left']:.0f}s"
        name = b["name"] + (" *" if b["name"] == this_box else "")
        started = datetime.fromisoformat(b["started"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            (name, lease, str(b["numbers"]), str(b["sellable"]), str(b["open_operations"]),
             b["version"], started)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    ops = status["open_operations"]
    if ops:
        lines.append("")
        lines.append("open operations (id, number, box pushing its SMS, service, expires):")
        for o in ops[:OPERATIONS_SHOWN]:
            lines.append(
                f"  {o['activation_id']}  {o['number']}  {o['box']}  {o['service']}"
                f"  {o['expires'] or 'rent'}"
            )
        if len(ops) > OPERATIONS_SHOWN:
            lines.append(f"  ... and {len(ops) - OPERATIONS_SHOWN} more")
    return "\n".join(lines) + "\n"


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from muxd.cluster.records import ClusterError, ClusterUnavailable
    from muxd.config import load

    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if cfg.cluster is None:
        print(
            f"{args.config}: cluster: no [cluster] section (this box runs alone)", file=sys.stderr
        )
        return EXIT_USAGE
    cluster = cfg.cluster
    try:
        status = asyncio.run(gather(cluster.database, cluster.box_name, cluster.lease))
    except (ClusterUnavailable, ClusterError) as exc:
        print(f"cluster database: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except MuxdError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(status, cluster.box_name))
    return EXIT_OK


def add_cluster_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="several boxes sharing PostgreSQL (preview)")
    cl = p.add_subparsers(dest="cluster_command", required=True)
    s = cl.add_parser("status", help="boxes, leases, numbers and open operations")
    s.add_argument("-c", "--config", required=True, help="TOML config file with [cluster]")
    s.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    s.set_defaults(func=cmd_cluster_status)
