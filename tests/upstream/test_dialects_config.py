"""The switches where Onlinesim's pages disagree: defaults (the newest pages), validation that
names the key, the wiring into the PUSH_SMS policy, and ``muxd stand-in --dialect``."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxd.app import Daemon
from muxd.cli import main
from muxd.config import load
from muxd.errors import ConfigError
from muxd.upstream.learned import FILE_NAME

V2 = """
state_dir = "{state}"
[modems]
ports = ["/dev/ttyUSB*"]
[upstream]
url = "https://example.invalid"
api_key = "k"
{upstream}
"""

V1 = """
state_dir = "{state}"
[modems]
ports = ["/dev/ttyUSB*"]
[upstream]
api = "v1"
api_key = "k"
{upstream}
[v1]
push_sms_url = "https://example.invalid/v1/PUSH_SMS"
services = ["vk"]
{v1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "muxd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_newest_pages(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, V1.format(state=tmp_path, upstream="", v1="")))
    assert (cfg.upstream.phone_type, cfg.upstream.rent_case) == ("string", "rent")
    assert cfg.upstream.check_work_method == "GET"
    assert (cfg.v1.push_success, cfg.v1.gzip_push) == ("http200", True)


def test_switches_reach_the_push_policy(tmp_path: Path) -> None:
    upstream = 'phone_type = "integer"\nrent_case = "RENT"'
    v1 = 'push_success = "status"\ngzip_push = false'
    cfg = load(write(tmp_path, V1.format(state=tmp_path, upstream=upstream, v1=v1)))
    policy = Daemon(cfg)._push_policy()
    assert (policy.success, policy.gzip, policy.phone_type, policy.rent_case) == (
        "status",
        False,
        "integer",
        "RENT",
    )
    assert policy._learned.path == tmp_path / FILE_NAME


@pytest.mark.parametrize(
    ("upstream", "v1", "key", "reason"),
    [
        ('phone_type = "int"', "", "upstream.phone_type", "Invalid enum value"),
        ('rent_case = "Rent"', "", "upstream.rent_case", "Invalid enum value"),
        ('check_work_method = "PUT"', "", "upstream.check_work_method", "Invalid enum value"),
        ("", 'push_success = "200"', "v1.push_success", "Invalid enum value"),
        ('test = "test1"', "", "upstream.test", "only in API v2"),
    ],
)
def test_bad_switches_name_the_key(
    tmp_path: Path, upstream: str, v1: str, key: str, reason: str
) -> None:
    path = write(tmp_path, V1.format(state=tmp_path, upstream=upstream, v1=v1))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert reason in str(info.value)


def test_check_work_method_in_v2(tmp_path: Path) -> None:
    text = V2.format(state=tmp_path, upstream='check_work_method = "POST"\ntest = "test1"')
    cfg = load(write(tmp_path, text))
    assert (cfg.upstream.check_work_method, cfg.upstream.test) == ("POST", "test1")


def test_stand_in_refuses_an_unknown_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stand-in", "--dialect", "string-response,klingon"]) == 2
    err = capsys.readouterr().err
    assert "--dialect: unknown dialect klingon" in err
    assert "string-response" in err  # the known ones are listed
