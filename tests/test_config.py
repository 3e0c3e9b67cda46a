"""The config loader names the file and the key for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxd.cli import main
from muxd.config import load
from muxd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
state_dir = "/tmp/muxd-state"
[modems]
ports = ["/dev/ttyUSB*"]
baudrate = 115200
[upstream]
url = "https://example.invalid"
api_key = "k"
numbers_mode = "list"
[http]
listen = "127.0.0.1:9108"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "muxd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert cfg.modems.ports == ["/dev/ttyUSB*"]
    assert cfg.upstream.numbers_mode == "list"
    assert cfg.numbers.file is None


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('api_key = "k"\n', ""))
    assert error_of(path) == f"{path}: upstream.api_key: missing required key"


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("baudrate = 115200", 'baudrate = "fast"'))
    assert error_of(path) == f"{path}: modems.baudrate: Expected `int`, got `str`"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("baudrate = 115200", "baudrate = 115200\nbaudrat = 9600"))
    assert error_of(path) == f"{path}: modems.baudrat: unknown key (did you mean 'baudrate'?)"


def test_unknown_key_far_from_any_gets_no_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("baudrate = 115200", "baudrate = 115200\nzzz = 1"))
    assert error_of(path) == f"{path}: modems.zzz: unknown key"


def test_unknown_key_in_nested_tables_suggests_the_closest(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD + '\n[[numbers.ussd]]\noperator = 25001\ncode = "*1#"\nregx = "x"\n'
    )
    assert error_of(path) == f"{path}: numbers.ussd[0].regx: unknown key (did you mean 'regex'?)"
    path = write(tmp_path, GOOD + "\n[jounral]\nretention_days = 1\n")
    assert error_of(path) == f"{path}: jounral: unknown key (did you mean 'journal'?)"


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "\n[extra]\nx = 1\n")
    assert error_of(path) == f"{path}: extra: unknown key"


def test_bad_enum_value_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('numbers_mode = "list"', 'numbers_mode = "all"'))
    assert error_of(path).startswith(f"{path}: upstream.numbers_mode: Invalid enum value 'all'")


def test_bad_listen_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("127.0.0.1:9108", "localhost"))
    assert error_of(path) == f"{path}: http.listen: expected host:port, got 'localhost'"


@pytest.mark.parametrize("key", ["k ey", "kéy", "key\\r\\nX-Evil: 1"])
def test_an_api_key_that_cannot_go_in_a_header_is_named(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, GOOD.replace('api_key = "k"', f'api_key = "{key}"'))
    assert error_of(path) == (
        f"{path}: upstream.api_key: expected printable ASCII without spaces or line breaks"
    )


def test_an_upstream_port_out_of_range_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("https://example.invalid", "https://example.invalid:99999"))
    assert error_of(path).startswith(f"{path}: upstream.url: Port out of range")


def test_missing_numbers_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[numbers]\nfile = "/nonexistent/numbers.csv"\n')
    assert error_of(path) == f"{path}: numbers.file: no such file: /nonexistent/numbers.csv"


def test_malformed_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "state_dir = \n")
    assert error_of(path).startswith(f"{path}: invalid TOML:")


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD)
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("baudrate = 115200", "baudrate = -1"), encoding="utf-8")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: modems.baudrate: Expected `int` >= 1")


def test_example_config_passes() -> None:
    assert main(["check-config", str(REPO / "contrib" / "muxd.example.toml")]) == 0
