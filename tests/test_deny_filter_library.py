"""The built-in v1 service filters: resolution from the config, what they take and leave,
and config mistakes naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from muxd.config import FilterRule, V1Config, load
from muxd.errors import ConfigError
from muxd.filter_library import LIBRARY, find, resolve_filters
from muxd.upstream.v1.pusher import compile_filters

# (service, sender, text) of SMS each service really sends, and one it must not take.
OWN = [
    ("tg", "Telegram", "Telegram code: 12345. Do not give this code to anyone"),
    ("wa", "WhatsApp", "Ваш код WhatsApp: 123-456"),
    ("vk", "VK", "VK: 482913 — ваш код для регистрации"),
    ("vk", "+79001234567", "Код VK ID: 1234"),
    ("go", "Google", "G-123456 is your Google verification code."),
    ("fb", "FACEBOOK", "FB-12345 is your Facebook confirmation code"),
    ("ig", "Instagram", "Use 123 456 to verify your Instagram account."),
    ("ok", "OK.RU", "Код для входа в Одноклассники: 1234"),
    ("av", "Avito", "Код подтверждения Авито: 1234"),
    ("ya", "Yandex", "Код подтверждения: 123456. Яндекс ID"),
    ("ub", "Uber", "Your Uber code: 1234"),
]
STRANGERS = [("vk", "VKUSVILL", "Ваш заказ собран"), ("tg", "VK", "VK: 1234")]


def rule(service: str, **kw: object) -> FilterRule:
    return resolve_filters(V1Config(services=[service], **kw))[service]  # type: ignore[arg-type]


def test_every_builtin_pattern_compiles_and_names_are_unique() -> None:
    names = [n for s in LIBRARY for n in s.names]
    assert len(names) == len(set(names))
    for service in LIBRARY:
        assert service.senders
        assert service.text
        for pattern in (*service.senders, *service.text):
            re.compile(pattern, re.IGNORECASE)


@pytest.mark.parametrize(("service", "sender", "text"), OWN)
def test_builtin_rule_takes_its_services_sms(service: str, sender: str, text: str) -> None:
    matches = compile_filters({service: rule(service, filter_library=True)})
    assert matches(service, sender, text)


@pytest.mark.parametrize(("service", "sender", "text"), STRANGERS)
def test_builtin_rule_leaves_other_sms(service: str, sender: str, text: str) -> None:
    matches = compile_filters({service: rule(service, filter_library=True)})
    assert not matches(service, sender, text)


def test_resolution_own_rules_win_builtin_adds_and_unknown_services_pass() -> None:
    cfg = V1Config(
        services=["vk", "Telegram", "somesvc", "wa"],
        filter_library=True,
        filter={
            "wa": FilterRule(senders=["^MyWA$"]),
            "vk": FilterRule(builtin=True, text=["^custom$"]),
        },
    )
    rules = resolve_filters(cfg)
    assert set(rules) == {"vk", "Telegram", "wa"}  # somesvc: no patterns, takes every SMS
    assert rules["wa"] == FilterRule(senders=["^MyWA$"])  # its own rule alone
    vk = find("vk")
    assert vk is not None
    assert rules["vk"].text == [*vk.text, "^custom$"]
    assert find("TELEGRAM") is find("tg")
    assert resolve_filters(V1Config(services=["vk"])) == {}  # off by default


def write(tmp_path: Path, v1: str) -> Path:
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path}"\n[modems]\nports = ["/dev/null*"]\n'
        '[upstream]\napi = "v1"\napi_key = "k"\n'
        '[v1]\npush_sms_url = "http://127.0.0.1:1/push"\nservices = ["vk"]\n' + v1,
        encoding="utf-8",
    )
    return cfg


def test_config_mistakes_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"v1\.filter\.nosuch\.builtin: no built-in patterns"):
        load(write(tmp_path, "[v1.filter.nosuch]\nbuiltin = true\n"))
    with pytest.raises(ConfigError, match=r"v1\.filter\.vk\.text\[1\]: invalid regular"):
        load(write(tmp_path, "[v1.filter.vk]\ntext = ['ok', '(']\n"))
    cfg = load(write(tmp_path, "filter_library = true\n[v1.filter.vk]\nbuiltin = true\n"))
    assert cfg.v1.filter_library
