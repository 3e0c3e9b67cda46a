"""``muxd v1 ...``: what API v1 sold and earned, and its operations (list, close a stuck one),
read from the journal; safe while the daemon runs."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from muxd.errors import ConfigError, MuxdError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` -> seconds."""
    found = DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a duration like 24h or 7d: {text!r}")
    return float(found.group(1)) * UNIT_SECONDS[found.group(2)]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def _state_dir(args: argparse.Namespace) -> Path:
    from muxd.config import load

    return Path(load(args.config).state_dir)


def cmd_sales(args: argparse.Namespace) -> int:
    from muxd.upstream.v1 import sales

    since = None if args.since is None else time.time() - args.since
    rows = sales.sales(_state_dir(args), since, args.by)
    body = [[r.key, str(r.sales), f"{r.earned:.2f}"] for r in rows]
    body.append(["total", str(sum(r.sales for r in rows)), f"{sum(r.earned for r in rows):.2f}"])
    print(_table([args.by, "sales", "earned_rub"], body))
    return EXIT_OK


def cmd_operations(args: argparse.Namespace) -> int:
    from muxd.upstream.v1 import sales

    state_dir = _state_dir(args)
    if args.operations_command == "close":
        outcome = sales.close_operation(state_dir, args.id, args.status, time.time())
        if outcome == "unknown":
            print(f"operation {args.id}: no such operation", file=sys.stderr)
            return EXIT_FAILURE
        if outcome == "not_open":
            print(f"operation {args.id}: not open (nothing changed)", file=sys.stderr)
            return EXIT_FAILURE
        print(f"operation {args.id}: closed with status {args.status}; its number is free")
        return EXIT_OK
    found = sales.list_operations(
        state_dir, open_only=args.open, number=args.number, limit=args.limit
    )
    body = [
        [
            str(op.activation_id),
            op.number,
            "rent" if op.rent else op.service,
            op.state,
            "-" if op.status is None else str(op.status),
            "-" if op.sum is None else f"{op.sum:g}",
            "-" if finish_sum is None else f"{finish_sum:g}",
            _when(op.created_at),
            _when(op.finished_at),
        ]
        for op, finish_sum in found
    ]
    header = ["id", "number", "service", "state", "status", "sum", "finish_sum", "created",
              "finished"]  # fmt: skip
    print(_table(header, body))
    return EXIT_OK


def cmd_v1(args: argparse.Namespace) -> int:
    try:
        if args.v1_command == "sales":
            return cmd_sales(args)
        return cmd_operations(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except MuxdError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE


def add_v1_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from muxd.upstream.v1.sales import CLOSE_STATUSES

    p = sub.add_parser("v1", help="API v1: sales, earnings and operations from the journal")
    p.set_defaults(func=cmd_v1)
    v1 = p.add_subparsers(dest="v1_command", required=True)
    s = v1.add_parser("sales", help="successful operations and RUB earned, as a table")
    s.add_argument("-c", "--config", required=True, help="TOML config file (for state_dir)")
    s.add_argument(
        "--since", type=parse_duration, help="only operations finished this recently (e.g. 24h)"
    )
    s.add_argument(
        "--by", choices=["service", "port", "day"], default="service", help="group rows by"
    )
    o = v1.add_parser("operations", help="list operations, or close one whose FINISH was lost")
    o.add_argument("-c", "--config", required=True, help="TOML config file (for state_dir)")
    ops = o.add_subparsers(dest="operations_command", required=True)
    lst = ops.add_parser("list", help="latest operations first")
    lst.add_argument("--open", action="store_true", help="only open operations")
    lst.add_argument("--number", help="only this number (+E.164)")
    lst.add_argument("--limit", type=int, default=100, help="at most this many rows")
    close = ops.add_parser(
        "close",
        help="finish an open operation locally (a lost FINISH_ACTIVATION); the running"
        " daemon frees its number within seconds",
    )
    close.add_argument("id", type=int, help="activation id")
    close.add_argument(
        "--status",
        type=int,
        choices=CLOSE_STATUSES,
        default=1,
        help="FINISH status to record (default 1: released, nothing sold)",
    )
