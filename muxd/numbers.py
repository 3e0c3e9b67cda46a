"""The operator's numbers file: which phone number each SIM (ICCID or IMSI) has."""

from __future__ import annotations

import csv

from muxd.errors import ConfigError
from muxd.numbering import normalise_number


def load_numbers(path: str | None) -> dict[str, str]:
    """The operator's numbers file (CSV header ``iccid,imsi,number``) -> {iccid|imsi: number}."""
    if path is None:
        return {}
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "number" not in reader.fieldnames:
                raise ConfigError(f"{path}: numbers.file: CSV header must be iccid,imsi,number")
            for lineno, row in enumerate(reader, start=2):
                number = normalise_number(row.get("number") or "")
                if number is None:
                    raise ConfigError(
                        f"{path}:{lineno}: numbers.file: number must be +digits,"
                        f" got {row.get('number')!r}"
                    )
                keys = [(row.get(k) or "").strip() for k in ("iccid", "imsi")]
                if not any(keys):
                    raise ConfigError(f"{path}:{lineno}: numbers.file: iccid and imsi both empty")
                for key in keys:
                    if key:
                        out[key] = number
    except OSError as exc:
        raise ConfigError(f"{path}: numbers.file: cannot read: {exc.strerror}") from exc
    return out
