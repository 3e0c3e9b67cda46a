"""Command line: ``muxd run | check-config | simulate | stand-in | demo | pdu decode``.

Only this module chooses the event loop: uvloop in production, the default loop in tests
(tests call the coroutines directly).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from muxd import __version__
from muxd.errors import ConfigError, MuxdError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _run_loop(coro: Coroutine[Any, Any, Any], *, use_uvloop: bool = True) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            use_uvloop = False
    if use_uvloop:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    from muxd.config import load
    from muxd.fleet import load_numbers

    try:
        cfg = load(args.file)
        load_numbers(cfg.numbers.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.file}: ok")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from muxd.app import Daemon, run_until_signalled
    from muxd.config import load

    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level)
    try:
        _run_loop(run_until_signalled(Daemon(cfg)), use_uvloop=not args.no_uvloop)
    except KeyboardInterrupt:
        return EXIT_OK
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except MuxdError as exc:
        logging.getLogger("muxd").critical("%s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from muxd.sim.modem import run_simulator

    _setup_logging(args.log_level)
    try:
        _run_loop(
            run_simulator(
                args.ports,
                Path(args.dir),
                rate=args.rate,
                log_path=Path(args.log) if args.log else None,
                duration=args.duration,
            )
        )
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_stand_in(args: argparse.Namespace) -> int:
    from muxd.config import parse_listen
    from muxd.sim.onlinesim import run_stub

    _setup_logging(args.log_level)
    host, port = parse_listen(args.listen)
    try:
        _run_loop(run_stub(host, port, args.api_key))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from muxd.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run_loop(run_demo(ports=args.ports, duration=args.duration, rate=args.rate))
    except KeyboardInterrupt:
        print("\nstopped")
    return EXIT_OK


def cmd_pdu_decode(args: argparse.Namespace) -> int:
    import msgspec

    from muxd.pdu import PduError, decode_pdu

    status = EXIT_OK
    for text in args.pdu:
        try:
            decoded = decode_pdu(text, tpdu_length=args.length)
        except PduError as exc:
            print(f"{text[:40]}: {exc}", file=sys.stderr)
            status = EXIT_FAILURE
            continue
        record = msgspec.to_builtins(decoded)
        record["type"] = type(decoded).__name__
        print(msgspec.json.format(msgspec.json.encode(record)).decode())
    return status


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muxd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"muxd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True, help="TOML config file")
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file (exit 0 ok, 2 invalid)")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("simulate", help="run pseudo-terminal modems")
    p.add_argument("--ports", type=int, default=8)
    p.add_argument("--dir", required=True, help="directory for the portNNN symlinks")
    p.add_argument("--rate", type=float, default=0.0, help="SMS per second to inject")
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--log", help="ground-truth JSON-lines log of injected SMS")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("stand-in", help="run the local stand-in for Onlinesim v2")
    p.add_argument("--listen", default="127.0.0.1:8099")
    p.add_argument("--api-key", default="demo-key")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_stand_in)

    p = sub.add_parser("demo", help="simulator + stand-in + daemon in one process")
    p.add_argument("--ports", type=int, default=16)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=4.0, help="SMS per second to inject")
    p.set_defaults(func=cmd_demo)

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

    p = sub.add_parser("pdu", help="PDU tools")
    pdu_sub = p.add_subparsers(dest="pdu_command", required=True)
    d = pdu_sub.add_parser("decode", help="decode PDUs (hex, with or without SMSC prefix)")
    d.add_argument("pdu", nargs="+")
    d.add_argument("--length", type=int, default=None, help="TPDU length from +CMGR/+CMGL")
    d.set_defaults(func=cmd_pdu_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
