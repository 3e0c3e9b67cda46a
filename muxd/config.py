"""Configuration: TOML file -> frozen msgspec Structs.

Unknown keys, wrong types and bad values fail at start with one line that names the file and
the key: ``FILE: section.key: what is wrong``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from muxd.errors import ConfigError
from muxd.numbering import UssdQuery

# Onlinesim v2 batches: the spec suggests "e.g. every 5 s"; activation codes are urgent, so 1 s.
DEFAULT_BATCH_DELAY = 1.0
DEFAULT_BATCH_MAX = 100
# sendNumbersOnline must be sent at least every 5 minutes (reseller-api.md §4).
NUMBERS_INTERVAL = 300.0


class ModemsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ports: Annotated[list[str], Meta(min_length=1)]
    baudrate: Annotated[int, Meta(gt=0)] = 115200
    # Seconds between storage sweeps (AT+CMGL=4); +CMTI is only a hint.
    sweep_interval: Annotated[float, Meta(gt=0)] = 60.0
    # Seconds between rescans of the port globs for hot-plugged modems.
    rescan_interval: Annotated[float, Meta(gt=0)] = 30.0


class NumbersConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    file: str | None = None
    # Own-number USSD queries per operator, tried when neither the file nor AT+CNUM knows.
    ussd: list[UssdQuery] = []


class UpstreamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    api_key: Annotated[str, Meta(min_length=1)]
    api: Literal["v2"] = "v2"
    numbers_mode: Literal["list", "incremental"] = "list"
    batch_max: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_BATCH_MAX
    batch_delay: Annotated[float, Meta(ge=0)] = DEFAULT_BATCH_DELAY
    numbers_interval: Annotated[float, Meta(gt=0)] = NUMBERS_INTERVAL
    rent: bool = False
    test: Literal["test1", "test2"] | None = None


class JournalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Delivered messages (and status reports) are deleted after this many days.
    retention_days: Annotated[float, Meta(gt=0)] = 7.0
    # A concatenated SMS still missing parts after this many seconds is delivered, flagged
    # incomplete, with a placeholder for each missing part (never dropped).
    reassembly_timeout: Annotated[float, Meta(gt=0)] = 1800.0


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state_dir: str
    modems: ModemsConfig
    upstream: UpstreamConfig
    numbers: NumbersConfig = NumbersConfig()
    journal: JournalConfig = JournalConfig()
    http: HttpConfig = HttpConfig()


_PATH_RE = re.compile(r"at `\$\.?([^`]*)`")
_FIELD_RE = re.compile(r"field `([^`]+)`")


def _key_and_reason(err: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's message into (dotted key, reason)."""
    text = str(err)
    match = _PATH_RE.search(text)
    path = match.group(1) if match else ""
    reason = text[: match.start()].rstrip(" -") if match else text
    field = _FIELD_RE.search(reason)
    if field and ("unknown field" in reason or "missing required field" in reason):
        path = f"{path}.{field.group(1)}" if path else field.group(1)
        reason = "unknown key" if "unknown field" in reason else "missing required key"
    path = re.sub(r"\[(\d+)\]", r"[\1]", path)
    return path or "(top level)", reason


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ValueError with the reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port_text)


def _check_values(cfg: Config) -> tuple[str, str] | None:
    if not re.match(r"^https?://[^/\s]+", cfg.upstream.url):
        return "upstream.url", f"expected an http:// or https:// URL, got {cfg.upstream.url!r}"
    try:
        parse_listen(cfg.http.listen)
    except ValueError as exc:
        return "http.listen", str(exc)
    for i, pattern in enumerate(cfg.modems.ports):
        if not pattern.strip():
            return f"modems.ports[{i}]", "empty pattern"
    for i, query in enumerate(cfg.numbers.ussd):
        try:
            re.compile(query.regex)
        except re.error as exc:
            return f"numbers.ussd[{i}].regex", f"invalid regular expression: {exc}"
    if cfg.numbers.file is not None:
        path = Path(cfg.numbers.file)
        if not path.is_file():
            return "numbers.file", f"no such file: {path}"
    return None


def load(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming file and key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        key, reason = _key_and_reason(exc)
        raise ConfigError(f"{path}: {key}: {reason}") from exc
    problem = _check_values(cfg)
    if problem is not None:
        raise ConfigError(f"{path}: {problem[0]}: {problem[1]}")
    return cfg
