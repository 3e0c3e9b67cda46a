"""Command line: ``muxd run | check-config | simulate | stand-in | demo | outbox | upstream |
cluster status | pdu decode``.

``-c FILE`` may stand before or after the subcommand (``muxd -c FILE outbox stats``, ``muxd
outbox -c FILE stats``, ``muxd outbox stats -c FILE``): see :func:`config_anywhere`.

Only this module chooses the event loop: uvloop in production, the default loop in tests (tests
call the coroutines directly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from muxd import __version__
from muxd.cli_ops import add_outbox_parser, add_upstream_parser, cmd_upstream
from muxd.cli_pdu import cmd_pdu_decode
from muxd.cli_v1 import add_v1_parser
from muxd.cluster.status import add_cluster_parser
from muxd.errors import ConfigError, MuxdError
from muxd.probe import add_probe_parser
from muxd_sim.modem_faults import FAULT_KEYS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
CONFIG_HELP = "TOML config file (before or after the subcommand)"
LOG_LEVEL_HELP = "debug, info (default), warning or error"


async def _until_signalled(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro``; SIGINT and SIGTERM cancel it through the loop's own signal handling (a
    handler installed with signal.signal may wait for the loop's next wake-up, which an idle
    process may not have for a long time)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await coro
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _run_loop(coro: Coroutine[Any, Any, Any], *, use_uvloop: bool = True) -> None:
    """Run ``coro`` on uvloop (or asyncio's loop); a signal that stops it raises
    KeyboardInterrupt here, as Ctrl-C does."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            use_uvloop = False
    factory = uvloop.new_event_loop if use_uvloop else None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_until_signalled(coro))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _setup_logging(level: str, fmt: str = "text") -> None:
    from muxd.log import setup_logging

    setup_logging(level, fmt)


def cmd_check_config(args: argparse.Namespace) -> int:
    from muxd.config import load
    from muxd.numbers import load_numbers

    path = args.file or args.config
    if path is None:
        print("muxd check-config: name the config FILE (or give -c FILE)", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load(path)
        load_numbers(cfg.numbers.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: ok")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from muxd.app import Daemon, run_until_signalled
    from muxd.config import load

    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level, args.log_format)
    try:
        _run_loop(run_until_signalled(Daemon(cfg)), use_uvloop=not args.no_uvloop)
    except KeyboardInterrupt:
        return EXIT_OK
    except ConfigError as exc:  # found at run time (a listen address taken): one line
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MuxdError as exc:
        logging.getLogger("muxd").critical("%s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from muxd_sim.modem import parse_fault_spec, parse_flavours, run_simulator

    try:
        flavours = parse_flavours(args.flavour)
        faults = parse_fault_spec(args.faults) if args.faults else None
    except ValueError as exc:
        print(f"muxd simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level)
    try:
        _run_loop(
            run_simulator(
                args.ports,
                Path(args.dir),
                rate=args.rate,
                log_path=Path(args.log) if args.log else None,
                duration=args.duration,
                flavours=flavours,
                faults=faults,
                fault_share=args.fault_share,
            )
        )
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_stand_in(args: argparse.Namespace) -> int:
    from muxd.config import parse_listen
    from muxd_sim.onlinesim import run_stub

    if args.record:
        try:
            Path(args.record).open("ab").close()
        except OSError as exc:
            print(f"muxd stand-in: --record: {exc}", file=sys.stderr)
            return EXIT_USAGE
    from muxd_sim.onlinesim_dialects import V2_DIALECTS, parse_dialects

    try:
        dialects = parse_dialects(args.dialect or "", V2_DIALECTS)
    except ValueError as exc:
        print(f"muxd stand-in: --dialect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level)
    host, port = parse_listen(args.listen)
    try:
        _run_loop(run_stub(host, port, args.api_key, record_path=args.record, dialects=dialects))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from muxd_sim.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run_loop(
            run_demo(ports=args.ports, duration=args.duration, rate=args.rate, keep=args.keep)
        )
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_upstream_preflight(args: argparse.Namespace) -> int:
    """``muxd upstream preflight -c FILE``: the calls the config will make, tried in test mode."""
    from muxd.config import load
    from muxd.upstream import preflight

    if args.config is None:
        print("muxd upstream preflight: -c/--config is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    code, text = preflight.run(cfg, number=args.number)
    print(text)
    return code


def _cmd_upstream_with_config(args: argparse.Namespace) -> int:
    if args.config is None:
        print("muxd upstream: -c/--config is required", file=sys.stderr)
        return EXIT_USAGE
    return cmd_upstream(args)


def _add_preflight_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``preflight`` under ``muxd upstream``; its ``-c`` may follow the subcommand, so the
    parent's ``-c`` is optional and checked by the other subcommands instead."""
    upstream = sub.choices["upstream"]
    upstream.set_defaults(func=_cmd_upstream_with_config)
    children = None
    for action in upstream._actions:
        if action.dest == "config":
            action.required = False
        if isinstance(action, argparse._SubParsersAction):
            children = action
    assert children is not None
    p = children.add_parser(
        "preflight",
        help="before going live: try every call the config will make (test mode)",
        description="Try every Onlinesim call the config will use, in test mode (v2), or the "
        "partner server through its public address (v1); print a table of call, what was "
        "sent, what came back, verdict and the config key to set. Exit 1 on any FAIL.",
    )
    p.add_argument("-c", "--config", dest="config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    p.add_argument("--number", default="+79000000000", help="number used in test-mode calls")
    p.set_defaults(func=cmd_upstream_preflight)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="muxd",
        description="Receive SMS on SIM-bank and modem-pool ports and forward them to Onlinesim.",
    )
    parser.add_argument("--version", action="version", version=f"muxd {__version__}")
    parser.add_argument("-c", "--config", default=None, metavar="FILE", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True, help="TOML config file")
    p.add_argument("--log-level", default="info", help=LOG_LEVEL_HELP)
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines (default) or one JSON object per line",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file (exit 0 ok, 2 invalid)")
    p.add_argument("file", nargs="?", help="the TOML config file (or give it with -c)")
    p.add_argument("-c", "--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("simulate", help="run pseudo-terminal modems")
    p.add_argument("--ports", type=int, default=8, help="how many modems (default: 8)")
    p.add_argument("--dir", required=True, help="directory for the portNNN symlinks")
    p.add_argument("--rate", type=float, default=0.0, help="SMS per second to inject")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--log", help="ground-truth JSON-lines log of injected SMS")
    p.add_argument(
        "--flavour",
        default="generic",
        help="generic,quectel,simcom,sim800,huawei,telit or all; cycled over ports",
    )
    p.add_argument(
        "--faults",
        default=None,
        help='e.g. "noise=0.05,split_reads,delay=0.2,urc_mid_response,hang=60:5,vanish=300:2"'
        f"; every key: {', '.join(FAULT_KEYS)}",
    )
    p.add_argument("--fault-share", type=float, default=1.0, help="share of ports with faults")
    p.add_argument("--log-level", default="info", help=LOG_LEVEL_HELP)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("stand-in", help="run the local stand-in for Onlinesim v2")
    p.add_argument(
        "--listen", default="127.0.0.1:8099", help="HOST:PORT to serve on (default: %(default)s)"
    )
    p.add_argument(
        "--api-key", default="demo-key", help="the key it accepts (default: %(default)s)"
    )
    p.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help='append one JSON line per accepted SMS: {"t", "number", "from", "message"}',
    )
    p.add_argument(
        "--dialect",
        default=None,
        metavar="NAME[,NAME]",
        help="answer in other readings of the docs: string-response, string-ids, json-errors, "
        "errors-in-200, post-checkwork, gzip-refused (default: strict)",
    )
    p.add_argument("--log-level", default="info", help=LOG_LEVEL_HELP)
    p.set_defaults(func=cmd_stand_in)

    p = sub.add_parser("demo", help="simulator + stand-in + daemon in one process")
    p.add_argument("--ports", type=int, default=16, help="how many modems (default: 16)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=4.0, help="SMS per second to inject")
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (journal, ptys, logs)"
    )
    p.set_defaults(func=cmd_demo)

    add_outbox_parser(sub)
    add_upstream_parser(sub)
    add_probe_parser(sub)
    _add_preflight_parser(sub)
    add_cluster_parser(sub)
    add_v1_parser(sub)

    p = sub.add_parser("pdu", help="PDU tools")
    pdu_sub = p.add_subparsers(dest="pdu_command", required=True)
    d = pdu_sub.add_parser(
        "decode",
        help="decode PDUs (hex, with or without SMSC prefix) to JSON lines",
        description="Decode PDUs to one JSON object per line; with no HEX, read one per "
        "line from stdin. Exit 1 if any PDU did not decode.",
    )
    d.add_argument("pdu", nargs="*", metavar="HEX", help="PDU in hex (default: stdin lines)")
    d.add_argument("--length", type=int, default=None, help="TPDU length from +CMGR/+CMGL")
    d.set_defaults(func=cmd_pdu_decode)
    config_anywhere(parser)
    return parser


def _children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The subcommands' parsers right below ``parser`` (an alias listed once)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if all(child is not seen for seen in found):
                    found.append(child)
    return found


def _config_action(parser: argparse.ArgumentParser) -> argparse.Action | None:
    return next((a for a in parser._actions if a.dest == "config"), None)


def _wants_config(parser: argparse.ArgumentParser) -> bool:
    return _config_action(parser) is not None or any(_wants_config(c) for c in _children(parser))


def config_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``-c FILE`` stand before or after the subcommand, at any depth.

    The top-level ``-c`` sets ``args.config`` (None when absent). Below it, every subcommand
    that takes ``-c``, has one that does below it, or sits below one, takes ``-c`` too, and
    none of those sets anything unless given (``SUPPRESS``), so the one given wins wherever it
    stands. A ``-c`` that was required is required no more at parse time (the top-level one
    may have come first); ``config_use`` ("required" or "optional") records it for
    :func:`check_config_given`. Runs once all subcommands are registered, so one added later
    gets the same treatment without knowing about it.
    """

    def spread(node: argparse.ArgumentParser, required: bool, inherited: bool) -> None:
        action = _config_action(node)
        if action is not None:
            if action.required:  # usage shows [-c FILE] now: the help says it
                action.help = f"{action.help or 'TOML config file'} (required)"
            required = required or action.required
            action.required = False
            action.default = argparse.SUPPRESS
            action.metavar = action.metavar or "FILE"
        elif inherited or _wants_config(node):
            flags = [f for f in ("-c", "--config") if f not in node._option_string_actions]
            node.add_argument(
                *flags, dest="config", default=argparse.SUPPRESS, metavar="FILE", help=CONFIG_HELP
            )
        else:
            return
        node.set_defaults(config_use="required" if required else "optional")
        for child in _children(node):
            spread(child, required, True)

    for child in _children(parser):
        spread(child, False, False)


def check_config_given(args: argparse.Namespace) -> str | None:
    """What is wrong with where ``-c`` was (or wasn't) given, or None."""
    use = getattr(args, "config_use", None)
    words = [v for k, v in vars(args).items() if (k == "command" or k.endswith("_command")) and v]
    command = " ".join(map(str, words))
    if use == "required" and args.config is None:
        return f"muxd {command}: -c/--config FILE is required"
    if use is None and args.config is not None:
        return f"muxd {command}: takes no -c/--config"
    return None


def _raise_nofile_limit() -> None:
    """Hundreds of ports need more descriptors than the usual soft limit of 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: Sequence[str] | None = None) -> int:
    _raise_nofile_limit()
    args = build_parser().parse_args(argv)
    problem = check_config_given(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
