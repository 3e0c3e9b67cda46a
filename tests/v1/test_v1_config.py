"""The v1 lifecycle keys in a real config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxd.config import load
from muxd.errors import ConfigError

BASE = """state_dir = "/tmp/x"
[modems]
ports = ["/dev/null*"]
[upstream]
api = "v1"
api_key = "k"
[v1]
push_sms_url = "https://push.example/v1/PUSH_SMS"
services = ["vk"]
"""


def test_only_finish_closes_by_default(tmp_path: Path) -> None:
    path = tmp_path / "muxd.toml"
    path.write_text(BASE)
    cfg = load(path)
    assert cfg.v1.reservation_expiry is False
    assert cfg.v1.public_url == ""


def test_bad_public_url_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "muxd.toml"
    path.write_text(BASE + 'public_url = "partner.example:8090"\nreservation_expiry = true\n')
    with pytest.raises(ConfigError, match=r"muxd\.toml: v1\.public_url: expected an http"):
        load(path)
