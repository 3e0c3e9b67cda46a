"""Logging: human-readable by default, JSON lines with ``--log-format json``.

Lines about one port carry its name and IMEI: as a ``port [imei]:`` prefix in text, as ``port``
and ``imei`` fields in JSON (see :class:`PortLog`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Protocol

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
