"""Logging: human-readable by default, JSON lines with ``--log-format json``.

Lines about one port carry its name and IMEI: as a ``port [imei]:`` prefix in text, as ``port``
and ``imei`` fields in JSON (see :class:`PortLog`).

Phone numbers in INFO lines and above go through :func:`mask_number` (``+7900***4567``): logs
are shipped and kept where SIM numbers have no business; DEBUG lines may show them whole.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# mask_number: at most this many leading and trailing digits stay, and at least MASK_HIDDEN
# digits in between are replaced by MASK.
MASK_HEAD = 4
MASK_TAIL = 4
MASK_HIDDEN = 3
MASK = "***"


def mask_number(number: str | None) -> str:
    """A phone number for an INFO log line: ``+79001234567`` -> ``+7900***4567`` (the country
    and operator prefix and the last four digits, enough to tell ports apart); a short number
    keeps fewer digits, so that at least :data:`MASK_HIDDEN` are always hidden."""
    if not number:
        return "-"
    sign = "+" if number.startswith("+") else ""
    digits = number[len(sign) :]
    tail = max(0, min(MASK_TAIL, len(digits) // 2 - 1))
    head = max(0, min(MASK_HEAD, len(digits) - tail - MASK_HIDDEN))
    return f"{sign}{digits[:head]}{MASK}{digits[len(digits) - tail :] if tail else ''}"


class _PortLike(Protocol):
    name: str
    imei: str | None


class PortLog(logging.LoggerAdapter[logging.Logger]):
    """Tags every record with the port (and IMEI once known)."""

    def __init__(self, logger: logging.Logger, port: _PortLike) -> None:
        super().__init__(logger, {})
        self.port = port

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        port = self.port
        extra = dict(kwargs.get("extra") or {})
        extra["port"] = port.name
        extra["imei"] = port.imei
        kwargs["extra"] = extra
        prefix = f"{port.name} [{port.imei}]" if port.imei else port.name
        return f"{prefix}: {msg}", kwargs


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("port", "imei"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
