"""The deny-list: its verdict, its config (a bad pattern names the key and the file), the
journal's one place of judgement (real SQLite), ``muxd outbox`` and the shipped example."""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from muxd.cli import main
from muxd.config import Config, DenyConfig, DenyRule, load
from muxd.deny import build_deny, load_deny_file
from muxd.errors import ConfigError
from muxd.metrics import Metrics
from muxd.pdu import encode_deliver
from muxd.store import Journal, PartIn, admin

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "contrib" / "deny.example.toml"
NUMBER = "+79001234567"
SCTS = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
RULES = {
    "bank": DenyRule(senders=["900", "Sberbank"], text=["код для оплаты"]),
    "puk": DenyRule(text=[r"\bPUK\d?\b"]),
}

BASE = (
    'state_dir = "{state}"\n[modems]\nports = ["/dev/null*"]\n'
    '[upstream]\nurl = "http://127.0.0.1:1"\napi_key = "k"\n'
)


def write_config(tmp_path: Path, extra: str) -> Path:
    cfg = tmp_path / "muxd.toml"
    cfg.write_text(BASE.format(state=tmp_path / "state") + extra, encoding="utf-8")
    return cfg


# -- the verdict -------------------------------------------------------------------------------


def test_senders_match_whole_and_text_anywhere_case_insensitive() -> None:
    deny = build_deny(DenyConfig(rules=RULES))
    assert deny.names == ("bank", "puk")
    assert deny.verdict("900", "Перевод 500 р") == "bank"
    assert deny.verdict("SBERBANK", "anything") == "bank"
    assert deny.verdict("+79001234567", "hello") is None  # "900" is the whole sender only
    assert deny.verdict("Shop", "Ваш КОД ДЛЯ ОПЛАТЫ 1234") == "bank"
    assert deny.verdict("MTS", "Your puk1 is 12345678") == "puk"
    assert deny.verdict("VK", "VK: 123456 is your code") is None
    assert not build_deny(DenyConfig())


def test_example_list_denies_the_owners_secrets_and_keeps_sellable_codes() -> None:
    rules = load_deny_file(EXAMPLE).rules
    deny = build_deny(DenyConfig(rules=rules))
    denied = {
        ("900", "Никому не сообщайте код 1234 для перевода 500 р"): "bank_codes",
        ("Bank", "Код 5555. Никому не сообщайте его! Списание 990 р с карты *1234"): "bank_codes",
        ("Tinkoff", "Код: 4321"): "bank_codes",
        ("MTS", "Ваш пароль для входа в Мой МТС: 8812"): "operator_selfcare",
        ("Info", "Пароль для входа в личный кабинет: qwe123"): "operator_selfcare",
        ("Tele2", "Ваш PUK1: 12345678"): "operator_selfcare",
        ("Operator", "Ваш PUK-код: 12345678"): "sim_security",
        ("Operator", "Заявка на замену SIM-карты принята"): "sim_security",
        ("Gosuslugi", "Код подтверждения 123456"): "state_services",
    }
    for (sender, text), rule in denied.items():
        assert deny.verdict(sender, text) == rule, (sender, text)
    kept = [
        ("VK", "VK: 482913 — ваш код для регистрации. Никому не сообщайте код"),
        ("Telegram", "Telegram code: 12345. Never share it with anyone"),
        ("WhatsApp", "Ваш код WhatsApp: 123-456. Не сообщайте этот код другим"),
        ("Google", "G-123456 is your Google verification code."),
        ("Avito", "Код подтверждения: 8841. Никому его не говорите"),
        ("+79001234567", "Привет, перезвони"),
    ]
    for sender, text in kept:
        assert deny.verdict(sender, text) is None, (sender, text)


# -- config ------------------------------------------------------------------------------------


def test_bad_inline_pattern_names_key_index_and_file(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[deny.rules.bank]\nsenders = ['900']\ntext = ['ok', '(']\n")
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert str(err.value).startswith(f"{cfg}: deny.rules.bank.text[1]: invalid regular expression")


def test_bad_pattern_in_the_deny_file_names_both_files_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "deny.toml").write_text("[rules.sim]\ntext = ['PUK', '[x']\n", encoding="utf-8")
    cfg = write_config(tmp_path, '[deny]\nfile = "deny.toml"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg)
    message = str(err.value)
    assert message.startswith(f"{cfg}: deny.file: {tmp_path / 'deny.toml'}: rules.sim.text[1]:")
    assert "invalid regular expression" in message


def test_check_config_prints_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "[deny.rules.x]\nsenders = ['*900']\n")
    assert main(["check-config", str(cfg)]) == 2
    assert "deny.rules.x.senders[0]: invalid regular expression" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ('[deny]\nfile = "missing.toml"\n', "deny.file", "no such file"),
        ("[deny.rules.empty]\n", "deny.rules.empty", "at least one pattern"),
        ("[deny.rules.x]\ntext = ['']\n", "deny.rules.x.text[0]", "empty pattern"),
        ("[deny.rules.\"a b\"]\ntext = ['x']\n", "deny.rules.a b", "a rule name"),
        ("[deny.rules.x]\nsender = ['900']\n", "deny.rules[...].sender", "did you mean 'senders'"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path: Path, extra: str, key: str, reason: str) -> None:
    cfg = write_config(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert str(err.value).startswith(f"{cfg}: {key}: "), err.value
    assert reason in str(err.value)


def test_deny_file_is_found_next_to_the_config_and_clashes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "deny.toml").write_bytes(EXAMPLE.read_bytes())
    cfg = write_config(tmp_path, '[deny]\nfile = "deny.toml"\n[deny.rules.mine]\ntext = ["x"]\n')
    loaded = load(cfg)
    assert loaded.deny.file == str(tmp_path / "deny.toml")
    names = build_deny(loaded.deny).names
    assert names[0] == "mine"  # inline rules come first
    assert {"bank_codes", "operator_selfcare", "sim_security"} <= set(names)
    clash = write_config(tmp_path, '[deny]\nfile = "deny.toml"\n[deny.rules.bank_codes]\n'
                         'text = ["x"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"deny\.rules\.bank_codes: also defined in"):
        load(clash)


def test_main_example_config_still_loads() -> None:
    assert isinstance(load(ROOT / "contrib" / "muxd.example.toml"), Config)


# -- the journal: one verdict where messages are created ---------------------------------------

_index = 0


async def put(journal: Journal, sender: str, text: str, **kwargs: object) -> list[int | None]:
    """Journal one SMS (all its parts); the message ids the parts completed."""
    global _index
    out = []
    for enc in encode_deliver(sender, text, scts=SCTS, **kwargs):  # type: ignore[arg-type]
        _index += 1
        result = await journal.put_part(
            PartIn("sim", "port000", NUMBER, "SM", _index, enc.hex, enc.tpdu_length, 1.0)
        )
        out.append(result.message_id)
    return out


async def test_denied_at_intake_never_pending_counted_listed_replayed(tmp_path: Path) -> None:
    seen: list[str] = []
    journal = await Journal.open(
        tmp_path, deny=build_deny(DenyConfig(rules=RULES)), on_denied=seen.append
    )
    try:
        (bank,) = await put(journal, "900", "Перевод 100 р")
        (ok,) = await put(journal, "VK", "VK: 123456")
        long_puk = "Ваш PUK: 12345678. " + "Подробности в салоне связи. " * 10
        *_, multi = await put(journal, "Operator", long_puk)
        assert multi is not None
        assert bank is not None
        assert seen == ["bank", "puk"]
        assert [m.id for m in await journal.pending(10)] == [ok]
        assert journal.backlog == 1
        stats = await journal.stats()
        assert (stats["messages_denied"], stats["messages_pending"]) == (2, 1)
    finally:
        await journal.close()
    rows = admin.list_messages(tmp_path, state="denied", limit=10)
    assert [(r["id"], r["last_error"]) for r in rows] == [
        (multi, "denied by puk"),
        (bank, "denied by bank"),
    ]
    counts = admin.stats(tmp_path)
    by_rule = (counts["denied_by_bank"], counts["denied_by_puk"])
    assert (counts["messages_denied"], by_rule) == (2, (1, 1))
    assert admin.replay(tmp_path, [bank]) == [bank]
    journal = await Journal.open(tmp_path, deny=build_deny(DenyConfig(rules=RULES)))
    try:
        # Released deliberately: pending, and not judged again.
        assert [m.id for m in await journal.pending(10)] == [bank, ok]
        assert journal.backlog == 2
    finally:
        await journal.close()


async def test_a_set_released_incomplete_is_judged_too(tmp_path: Path) -> None:
    deny = build_deny(DenyConfig(rules=RULES))
    journal = await Journal.open(tmp_path, deny=deny)
    try:
        text = "Ваш PUK: 12345678. " + "x" * 200
        encs = encode_deliver("Operator", text, scts=SCTS)
        enc = encs[0]  # the second part never comes
        result = await journal.put_part(
            PartIn("sim", "port000", NUMBER, "SM", 1, enc.hex, enc.tpdu_length, 1.0)
        )
        assert result.state == "waiting"
        assert await journal.release_incomplete(0.0) == 1
        assert await journal.pending(10) == []
        assert journal.backlog == 0
        assert (await journal.stats())["messages_denied"] == 1
    finally:
        await journal.close()


async def test_denied_messages_are_pruned_with_the_retention(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path, deny=build_deny(DenyConfig(rules=RULES)))
    try:
        await put(journal, "900", "Перевод 100 р")
        assert await journal.prune(older_than=2.0) == 1  # received at 1.0
        assert "messages_denied" not in await journal.stats()
    finally:
        await journal.close()


def test_metric_rules_start_at_zero_and_count() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.start_denied(("bank", "puk"))
    value = metrics.registry.get_sample_value
    assert value("muxd_sms_denied_total", {"rule": "bank"}) == 0
    assert value("muxd_sms_denied_total", {"rule": "puk"}) == 0
    metrics.count_denied("bank")
    metrics.count_denied("not-configured")  # never a new label value
    assert value("muxd_sms_denied_total", {"rule": "bank"}) == 1
    assert b'rule="not-configured"' not in generate_latest(metrics.registry)


# -- muxd outbox ----------------------------------------------------------------------------


async def test_outbox_cli_lists_stats_and_replays_denied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "[deny.rules.bank]\nsenders = ['900']\n")
    journal = await Journal.open(tmp_path / "state", deny=build_deny(load(cfg).deny))
    try:
        (bank,) = await put(journal, "900", "Перевод 100 р")
        await put(journal, "VK", "VK: 1")
    finally:
        await journal.close()
    assert main(["outbox", "-c", str(cfg), "list", "--state", "denied"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["id"], row["state"], row["last_error"]) == (bank, "denied", "denied by bank")
    assert main(["outbox", "-c", str(cfg), "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["messages_denied"], stats["denied_by_bank"]) == (1, 1)
    assert main(["outbox", "-c", str(cfg), "replay", str(bank)]) == 0
    assert json.loads(capsys.readouterr().out) == {"replayed": [bank]}
    assert admin.stats(tmp_path / "state")["messages_denied"] == 0


async def test_parked_part_replayed_through_intake_is_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part that did not decode then decodes now is judged like any new SMS."""
    cfg = write_config(tmp_path, "[deny.rules.bank]\nsenders = ['900']\n")
    journal = await Journal.open(tmp_path / "state")
    try:
        (enc,) = encode_deliver("900", "Перевод 100 р", scts=SCTS)
        # Stored parked, as an older decoder would have (the state a decoder fix revisits).
        result = await journal.put_part(
            PartIn("sim", "port000", NUMBER, "SM", 1, enc.hex, enc.tpdu_length, 1.0)
        )
        part_id = result.part_id

        def park(conn: object) -> None:
            conn.execute(  # type: ignore[attr-defined]
                "UPDATE parts SET state = 'parked', message_id = NULL WHERE id = ?", (part_id,)
            )
            conn.execute("DELETE FROM messages")  # type: ignore[attr-defined]

        await journal.execute(park)
    finally:
        await journal.close()
    assert main(["outbox", "-c", str(cfg), "parts", "replay", str(part_id)]) == 0
    (replayed,) = json.loads(capsys.readouterr().out)["replayed"]
    assert replayed["denied"] == ["bank"]
    assert admin.stats(tmp_path / "state")["messages_denied"] == 1


# -- property: the journal's verdict is the deny-list's, and the backlog stays exact --------

SENDERS = ("900", "VK", "Sberbank", "+79001234567", "Operator")
TEXTS = ("VK: 1234", "Ваш PUK: 87654321", "Код для оплаты 55", "привет", "x" * 200 + " PUK")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SENDERS), st.sampled_from(TEXTS)), max_size=8))
def test_journal_verdicts_match_the_deny_list(sms: list[tuple[str, str]]) -> None:
    deny = build_deny(DenyConfig(rules=RULES))

    async def run(state: Path) -> None:
        journal = await Journal.open(state, deny=deny)
        try:
            ids = []
            for k, (sender, text) in enumerate(sms):
                # Each SMS its own concatenation reference, as a network gives it.
                *_, mid = await put(journal, sender, f"#{k} {text}", ref=k + 1)
                ids.append(mid)
            pending = {m.id for m in await journal.pending(100)}
            expected = {i for i, (s, t) in zip(ids, sms, strict=True) if deny.verdict(s, t) is None}
            assert pending == expected
            assert journal.backlog == len(expected)
        finally:
            await journal.close()
        rows = admin.list_messages(state, state="denied", limit=100)
        by_id = dict(zip(ids, sms, strict=True))
        for row in rows:
            sender, text = by_id[int(row["id"])]  # type: ignore[call-overload]
            assert row["last_error"] == f"denied by {deny.verdict(sender, text)}"
        assert len(rows) == len(sms) - len(expected)

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp)))
