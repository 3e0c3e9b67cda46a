"""[upstream] batch_delay: optional (absent or 0 is adaptive), bounded, named when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxd.config import BATCH_DELAY_MAX, load
from muxd.errors import ConfigError

BASE = """state_dir = "/tmp/muxd-test"
[modems]
ports = ["/dev/ttyUSB*"]
[upstream]
url = "http://127.0.0.1:1"
api_key = "k"
"""


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "muxd.toml"
    path.write_text(BASE + extra)
    return path


def test_batch_delay_is_unset_by_default(tmp_path: Path) -> None:
    assert load(config(tmp_path)).upstream.batch_delay is None


@pytest.mark.parametrize("value", ["0", "0.0", "0.25", "5", str(BATCH_DELAY_MAX)])
def test_batch_delay_takes_a_cap_in_seconds(tmp_path: Path, value: str) -> None:
    assert load(config(tmp_path, f"batch_delay = {value}\n")).upstream.batch_delay == float(value)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "61", '"1s"', "true"])
def test_a_bad_batch_delay_names_the_key_and_the_file(tmp_path: Path, value: str) -> None:
    path = config(tmp_path, f"batch_delay = {value}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: upstream.batch_delay: ")
