"""Operator subcommands: ``muxd outbox ...`` (journal) — kept apart from cli.py's core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muxd.errors import ConfigError, MuxdError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def cmd_outbox(args: argparse.Namespace) -> int:
    import orjson

    from muxd.config import load
    from muxd.store import admin

    try:
        state_dir = Path(load(args.config).state_dir)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.outbox_command == "stats":
            result: object = admin.stats(state_dir)
        elif args.outbox_command == "list":
            for row in admin.list_messages(state_dir, state=args.state, limit=args.limit):
                print(orjson.dumps(row).decode())
            return EXIT_OK
        elif args.outbox_command == "replay":
            result = {"replayed": admin.replay(state_dir, args.ids, force=args.force)}
        else:
            result = {"parked": admin.park(state_dir, args.ids)}
    except MuxdError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def add_outbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("outbox", help="inspect and steer the delivery queue")
    p.add_argument("-c", "--config", required=True, help="TOML config file (for state_dir)")
    p.set_defaults(func=cmd_outbox)
    ob = p.add_subparsers(dest="outbox_command", required=True)
    ob.add_parser("stats", help="counts by state, oldest pending age")
    o = ob.add_parser("list", help="latest messages, one JSON object per line")
    o.add_argument("--state", choices=["pending", "delivered", "parked"])
    o.add_argument("--limit", type=int, default=50)
    o = ob.add_parser("replay", help="queue parked messages again")
    o.add_argument("ids", nargs="+", type=int)
    o.add_argument("--force", action="store_true", help="also re-send delivered ones (a copy)")
    o = ob.add_parser("park", help="take pending messages out of delivery")
    o.add_argument("ids", nargs="+", type=int)
