"""The command line as a whole: ``-c FILE`` before or after the subcommand, help text on every
option, and ``simulate --faults`` listing every fault."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muxd.cli import build_parser, check_config_given, main
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn
from muxd_sim.modem_faults import FAULT_KEYS, parse_fault_spec


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    """A config whose state_dir holds a journal with one pending message."""
    state = tmp_path / "state"
    journal = await Journal.open(state)
    try:
        (enc,) = encode_deliver("Bank", "code 1", scts=datetime(2026, 11, 25, 12, tzinfo=UTC))
        await journal.put_part(
            PartIn(
                sim="s",
                port="port000",
                number="+79001234567",
                storage="SM",
                index=1,
                pdu=enc.hex,
                tpdu_length=enc.tpdu_length,
                received_at=1.0,
            )
        )
    finally:
        await journal.close()
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{state}"\n[modems]\nports = ["/dev/null*"]\n'
        '[upstream]\nurl = "http://127.0.0.1:1"\napi_key = "k"\n',
        encoding="utf-8",
    )
    return cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- -c anywhere ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        ["-c", "CFG", "outbox", "stats"],
        ["outbox", "-c", "CFG", "stats"],
        ["outbox", "stats", "-c", "CFG"],
        ["--config", "CFG", "outbox", "stats"],
        ["outbox", "stats", "--config=CFG"],
    ],
    ids=["before", "between", "after", "long-before", "long-after"],
)
def test_outbox_takes_c_before_or_after_the_subcommand(
    config: Path, capsys: pytest.CaptureFixture[str], where: list[str]
) -> None:
    argv = [a.replace("CFG", str(config)) for a in where]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert '"messages_pending": 1' in out


@pytest.mark.parametrize(
    "where",
    [
        ["-c", "CFG", "outbox", "list", "--limit", "5"],
        ["outbox", "list", "-c", "CFG", "--limit", "5"],
        ["outbox", "list", "--limit", "5", "-c", "CFG"],
    ],
)
def test_outbox_list_with_c_anywhere(
    config: Path, capsys: pytest.CaptureFixture[str], where: list[str]
) -> None:
    code, out, _ = run(capsys, *[a.replace("CFG", str(config)) for a in where])
    assert code == 0
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "F", "run"],
        ["run", "-c", "F"],
        ["-c", "F", "cluster", "status"],
        ["cluster", "-c", "F", "status"],
        ["cluster", "status", "-c", "F"],
        ["-c", "F", "upstream", "take-off"],
        ["upstream", "take-off", "-c", "F", "--sum", "10"],
        ["-c", "F", "upstream", "preflight"],
        ["upstream", "-c", "F", "preflight"],
        ["-c", "F", "probe"],
        ["probe", "-c", "F"],
        ["-c", "F", "outbox", "parts", "replay", "--all"],
        ["outbox", "parts", "replay", "--all", "-c", "F"],
    ],
)
def test_every_command_with_a_config_takes_it_on_either_side(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == "F"
    assert check_config_given(args) is None


def test_the_c_nearest_the_command_wins() -> None:
    args = build_parser().parse_args(["-c", "outer", "outbox", "stats", "-c", "inner"])
    assert args.config == "inner"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["outbox", "stats"], "muxd outbox stats: -c/--config FILE is required"),
        (["run"], "muxd run: -c/--config FILE is required"),
        (["cluster", "status"], "muxd cluster status: -c/--config FILE is required"),
        (["-c", "F", "demo"], "muxd demo: takes no -c/--config"),
        (["-c", "F", "pdu", "decode", "00"], "muxd pdu decode: takes no -c/--config"),
    ],
)
def test_a_missing_or_useless_c_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", message + "\n")


@pytest.mark.parametrize(
    "form", [["check-config", "CFG"], ["-c", "CFG", "check-config"], ["check-config", "-c", "CFG"]]
)
def test_check_config_takes_the_file_either_way(
    config: Path, capsys: pytest.CaptureFixture[str], form: list[str]
) -> None:
    code, out, _ = run(capsys, *[a.replace("CFG", str(config)) for a in form])
    assert (code, out) == (0, f"{config}: ok\n")


def test_check_config_without_a_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check-config")
    assert code == 2
    assert "name the config FILE" in err


# -- help text ------------------------------------------------------------------------------------


def walk(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, argparse.Action]]:
    for action in parser._actions:
        yield parser, action
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from walk(child)


def test_every_option_and_subcommand_has_help() -> None:
    missing = []
    count = 0
    for parser, action in walk(build_parser()):
        count += 1
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            missing += [f"{parser.prog} {name}" for name in action.choices if name not in helped]
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert count > 60  # the walk reached the nested subcommands
    assert missing == []


def test_simulate_help_lists_every_fault(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: no wrapping inside a key
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for key in FAULT_KEYS:
        assert key in out


def example(key: str) -> str:
    """A fault spec item from its listed form: ``hang=EVERY:SECONDS`` -> ``hang=10:1``."""
    spec = re.sub(r"\[(=[^]]*)\]", r"\1", key)  # an optional value, given
    spec = re.sub(r"=(\w+)(?:\|\w+)+", r"=\1", spec)  # the first of the choices
    for word, value in (("MIN-MAX", "1-2"), ("GAP_S", "0.1"), ("EVERY", "10")):
        spec = spec.replace(word, value)
    for word, value in (("SECONDS", "1"), ("P", "0.1"), ("S", "1")):
        spec = re.sub(rf"\b{word}\b", value, spec)
    return spec


@pytest.mark.parametrize("key", FAULT_KEYS)
def test_every_listed_fault_is_accepted_bare_and_with_a_value(key: str) -> None:
    parse_fault_spec(example(key))
    if "=" not in key or "[=" in key:
        parse_fault_spec(key.split("[")[0])
