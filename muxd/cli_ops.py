"""Operator subcommands: ``muxd outbox ...`` (journal) and ``muxd upstream ...`` (Onlinesim's
optional v2 endpoints) — kept apart from cli.py's core."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from muxd.errors import ConfigError, MuxdError, UpstreamError

if TYPE_CHECKING:
    from muxd.config import UpstreamConfig

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
LIMIT_HELP = "at most this many, newest first (default: %(default)s)"


def cmd_outbox(args: argparse.Namespace) -> int:
    import orjson

    from muxd.config import load
    from muxd.store import admin

    try:
        cfg = load(args.config)
        state_dir = Path(cfg.state_dir)
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
        elif args.outbox_command == "parts":
            if getattr(args, "parts_command", None) == "replay":
                if bool(args.ids) == args.all:
                    print("parts replay: name the part ids, or give --all alone", file=sys.stderr)
                    return EXIT_USAGE
                ids = None if args.all else args.ids
                from muxd.deny import build_deny

                deny = build_deny(cfg.deny)
                result = {"replayed": admin.replay_parts(state_dir, ids, deny)}
            else:
                for row in admin.list_parts(state_dir, decode=args.decode, limit=args.limit):
                    print(orjson.dumps(row).decode())
                return EXIT_OK
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
    o.add_argument(
        "--state",
        choices=[
            "pending", "held", "delivered", "parked", "no_operation", "filtered", "rejected",
            "denied",
        ],
        help="only messages in this state (default: any)",
    )  # fmt: skip
    o.add_argument("--limit", type=int, default=50, help=LIMIT_HELP)
    o = ob.add_parser("replay", help="queue parked (or held, or denied) messages again")
    o.add_argument("ids", nargs="+", type=int, metavar="ID", help="message id (from 'list')")
    o.add_argument("--force", action="store_true", help="also re-send delivered ones (a copy)")
    o = ob.add_parser("park", help="take pending messages out of delivery")
    o.add_argument("ids", nargs="+", type=int, metavar="ID", help="message id (from 'list')")
    o = ob.add_parser(
        "parts",
        help="parked parts (PDUs that did not decode), one JSON object per line",
        description="List parked parts (newest first); 'parts replay' runs them through "
        "intake again with this muxd's decoder (what decodes now is forwarded).",
    )
    o.add_argument("--decode", action="store_true", help="add the PDU and what decodes now")
    o.add_argument("--limit", type=int, default=50, help=LIMIT_HELP)
    parts = o.add_subparsers(dest="parts_command")
    o = parts.add_parser("replay", help="run parked parts through intake again")
    o.add_argument("ids", nargs="*", type=int, metavar="ID", help="part id (from 'parts')")
    o.add_argument("--all", action="store_true", help="every parked part (no ID)")


async def _upstream_call(upstream: UpstreamConfig, args: argparse.Namespace) -> object:
    import aiohttp

    from muxd.upstream.v2 import V2Client

    async with aiohttp.ClientSession() as http:
        client = V2Client(http, upstream.url, upstream.api_key, test=upstream.test)
        if args.upstream_command == "check-number":
            return await client.check_number(args.number)
        if args.upstream_command == "take-off":
            return await client.take_off_numbers(args.sum)
        services = list(dict.fromkeys(args.services))  # saveConfig keys are unique anyway
        await client.save_config(services)
        return {"blacklist": services}


def cmd_upstream(args: argparse.Namespace) -> int:
    """One request to Onlinesim's optional v2 endpoints; its answer as indented JSON."""
    import asyncio

    import orjson

    from muxd.config import load

    if args.upstream_command == "blacklist" and bool(args.services) == args.clear:
        print("blacklist: name the services, or give --clear alone", file=sys.stderr)
        return EXIT_USAGE
    try:
        upstream = load(args.config).upstream
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        result = asyncio.run(_upstream_call(upstream, args))
    except UpstreamError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURE
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return EXIT_OK


def add_upstream_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("upstream", help="query Onlinesim: number details, income, blacklist")
    p.add_argument("-c", "--config", required=True, help="TOML config file (for [upstream])")
    p.set_defaults(func=cmd_upstream)
    up = p.add_subparsers(dest="upstream_command", required=True)
    o = up.add_parser("check-number", help="details of one number (checkNumber)")
    o.add_argument("number", help="international format with +, e.g. +79001234567")
    o = up.add_parser("take-off", help="listed numbers that earned at least --sum RUB")
    o.add_argument("--sum", default="50", help="RUB threshold (default: 50)")
    o = up.add_parser(
        "blacklist",
        help="replace the whole service blacklist (saveConfig)",
        description="Replace the WHOLE service blacklist: name every service to keep disabled, "
        "old and new. Blacklisted services are marked used on all numbers (not for rent).",
    )
    o.add_argument("services", nargs="*", metavar="SERVICE", help="service name, e.g. vkcom")
    o.add_argument("--clear", action="store_true", help="empty the blacklist (no SERVICE)")
