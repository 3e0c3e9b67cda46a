"""What muxd learned from the upstream's answers, kept across restarts.

When a configured reading is refused and the other one works (a gzipped PUSH_SMS body refused,
checkWork answering 404/405 to one method), the working value is remembered in a small JSON
file in the state directory, with the configured value it replaced. It is used while the
configuration still says the same thing; an operator who changes the key starts afresh.

The file is tiny and written only when something is learned (once per key, in practice), so it
is written synchronously: an atomic replace, never a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Final

LOGGER = logging.getLogger(__name__)

FILE_NAME: Final = "upstream-learned.json"

Value = str | bool


class Learned:
    def __init__(self, path: Path | None = None) -> None:
        """``path``: the JSON file (None: remember for this process only)."""
        self.path = path
        self._known: dict[str, dict[str, Value]] = {}
        if path is not None:
            self._load(path)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> Learned:
        return cls(Path(state_dir) / FILE_NAME)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            LOGGER.warning("%s: unreadable, learning again: %s", path, exc)
            return
        if not isinstance(data, dict):
            return
        for key, entry in data.items():
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("configured"), str | bool)
                and isinstance(entry.get("learned"), str | bool)
            ):
                self._known[str(key)] = {
                    "configured": entry["configured"],
                    "learned": entry["learned"],
                }
                LOGGER.info(
                    "%s: %s learned earlier replaces the configured %s (%s)",
                    key,
                    json.dumps(entry["learned"]),
                    json.dumps(entry["configured"]),
                    path,
                )

    def get(self, key: str, configured: Value) -> Value:
        """The value to use for ``key``: the learned one while the configuration still says
        ``configured``, else ``configured``."""
        entry = self._known.get(key)
        if entry is None or entry["configured"] != configured:
            return configured
        return entry["learned"]

    def learn(self, key: str, configured: Value, learned: Value, why: str) -> None:
        """Remember ``learned`` for ``key`` (logged once, at WARNING, with ``why``)."""
        if self.get(key, configured) == learned:
            return
        if learned == configured:
            self._known.pop(key, None)
        else:
            self._known[key] = {"configured": configured, "learned": learned}
        LOGGER.warning(
            "%s: using %s instead of the configured %s from now on (%s)%s",
            key,
            json.dumps(learned),
            json.dumps(configured),
            why,
            f"; remembered in {self.path}" if self.path is not None else "",
        )
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as out:
                json.dump(self._known, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # kept in memory: only a restart relearns it
            LOGGER.error("%s: cannot save what was learned: %s", self.path, exc)
