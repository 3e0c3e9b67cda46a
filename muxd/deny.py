"""The deny-list: SMS muxd keeps but never forwards (bank codes for the SIM owner's own
accounts, operator self-care passwords, PUK notices...).

One verdict per message, taken once, where the message enters the journal
(:func:`muxd.store.deny.judge`): v2 and v1 (activations and rent alike) see the same answer,
and only an operator's ``muxd outbox replay`` releases a denied message.

A rule is a name (a metric label, shown in ``muxd outbox``) with regular expressions, all
case-insensitive: ``senders`` must match the whole sender (``900`` does not deny
``+79001234567``), ``text`` is searched anywhere in the text. Rules come from ``[deny.rules.NAME]``
in the config and from ``deny.file`` (a TOML file of ``[rules.NAME]`` tables); the first rule
that matches, in that order, is the one recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from muxd.config import DenyConfig, DenyRule, load_toml
from muxd.errors import ConfigError

__all__ = ["DenyList", "Rule", "build_deny", "check_deny", "load_deny_file"]

# Rule names become metric label values and journal notes: short, plain words.
RULE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class DenyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The shape of ``deny.file``."""

    rules: dict[str, DenyRule] = {}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    senders: tuple[re.Pattern[str], ...]
    text: tuple[re.Pattern[str], ...]

    def matches(self, sender: str, text: str) -> bool:
        return any(p.fullmatch(sender) for p in self.senders) or any(
            p.search(text) for p in self.text
        )


class DenyList:
    """Compiled rules; :meth:`verdict` says which one denies an SMS (None: forward it)."""

    def __init__(self, rules: tuple[Rule, ...] = ()) -> None:
        self.rules = rules

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def verdict(self, sender: str, text: str) -> str | None:
        """The name of the first rule that denies this SMS, or None."""
        for rule in self.rules:
            if rule.matches(sender, text):
                return rule.name
        return None


class _Invalid(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _compile_one(key: str, patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    out = []
    for i, pattern in enumerate(patterns):
        if not pattern:
            raise _Invalid(f"{key}[{i}]", "empty pattern (it would match every SMS)")
        try:
            out.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise _Invalid(f"{key}[{i}]", f"invalid regular expression: {exc}") from exc
    return tuple(out)


def _compile(rules: Mapping[str, DenyRule], prefix: str) -> list[Rule]:
    """Rules of one source; ``prefix`` is where they sit (``deny.rules`` or ``rules``)."""
    out = []
    for name, rule in rules.items():
        key = f"{prefix}.{name}"
        if not RULE_NAME.match(name):
            raise _Invalid(key, "a rule name is 1-64 letters, digits, '_', '.' or '-'")
        if not rule.senders and not rule.text:
            raise _Invalid(key, "list at least one pattern in senders or text")
        senders = _compile_one(f"{key}.senders", rule.senders)
        text = _compile_one(f"{key}.text", rule.text)
        out.append(Rule(name, senders, text))
    return out


def load_deny_file(path: Path) -> DenyFile:
    """Read ``deny.file``; raise ConfigError naming the file and the key."""
    return load_toml(path, DenyFile)


def _build(cfg: DenyConfig) -> DenyList:
    """Raises _Invalid (a key of the config) or ConfigError (deny.file's own problems)."""
    rules = _compile(cfg.rules, "deny.rules")
    if cfg.file:
        path = Path(cfg.file)
        if not path.is_file():
            raise _Invalid("deny.file", f"no such file: {path}")
        try:
            from_file = _compile(load_deny_file(path).rules, "rules")
        except _Invalid as exc:
            raise ConfigError(f"{path}: {exc.key}: {exc.reason}") from exc
        for rule in from_file:
            if rule.name in cfg.rules:
                raise _Invalid(f"deny.rules.{rule.name}", f"also defined in {path}")
        rules += from_file
    return DenyList(tuple(rules))


def build_deny(cfg: DenyConfig) -> DenyList:
    """The deny-list of a loaded config (empty when none is configured)."""
    try:
        return _build(cfg)
    except _Invalid as exc:
        raise ConfigError(f"{exc.key}: {exc.reason}") from exc


def check_deny(cfg: DenyConfig) -> tuple[str, str] | None:
    """(key, what is wrong) for the config loader; None when the deny-list builds."""
    try:
        _build(cfg)
    except _Invalid as exc:
        return exc.key, exc.reason
    except ConfigError as exc:
        return "deny.file", str(exc)
    return None
