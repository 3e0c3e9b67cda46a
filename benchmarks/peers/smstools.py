"""smstools3 (Debian's ``smstools``: ``smsd``) as the daemon under test.

One ``[GSMn]`` device per pty, everything else in a ``[default]`` section, spool and log in the
run's work directory; ``smsd -t`` (foreground) forks one modem process per device, all counted
as the daemon (CPU summed, RSS = sum of each process's peak). Its delivery sink is its
``incoming`` directory: one file per SMS with ``From:``/``Modem:`` headers and the text; the
receipt time is the file's mtime.

Settings: ``delaytime = 1`` (the modem processes poll storage every second: smsd has no +CMTI
path; its default is 10 s), ``loglevel = 5`` (notice: one line per SMS), ``incoming_utf8 = yes``.
UCS-2 texts are left as smsd stores them by default (raw UCS-2, ``Alphabet: UCS2``) and decoded
here; with ``decode_unicode_text = yes`` smsd 3.1.21 cuts a text at its first non-BMP character
(an emoji), which would count as corruption.

smsd allows at most 64 devices (``NUMBER_OF_MODEMS``, a compile-time constant of the Debian
build), so runs are limited to 64 ports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e_core import Fleet, log_tail, stop_process
from muxd_sim.ledger import Delivery

MAX_DEVICES = 64  # smsd's compile-time NUMBER_OF_MODEMS
STABLE_S = 0.3  # an incoming file is read once it is this old (smsd may still be writing it)
_IMSI = re.compile(r", (GSM\d+): IMSI: ")


class SmstoolsTarget:
    name = "smstools3"

    def __init__(self) -> None:
        self.notes: dict[str, Any] = {
            "version": _version(),
            "delaytime": 1,
            "loglevel": 5,
            "incoming_utf8": "yes",
            "sink": "smsd incoming directory (file mtime = receipt time)",
            "device_limit": MAX_DEVICES,
        }
        self.seen: set[str] = set()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, fleet: Fleet, work: Path) -> None:
        if shutil.which("smsd") is None:
            raise RuntimeError("smsd not found: apt-get install -y smstools")
        if len(fleet.ports) > MAX_DEVICES:
            raise RuntimeError(
                f"smsd handles at most {MAX_DEVICES} devices (compile-time limit); "
                f"run it with --ports {MAX_DEVICES} or fewer"
            )
        self.fleet = fleet
        root = work / "smsd"
        spool = {name: root / name for name in ("outgoing", "checked", "incoming", "failed")}
        for d in spool.values():
            d.mkdir(parents=True, exist_ok=True)
        self.incoming = spool["incoming"]
        self.log_path = root / "smsd.log"
        self.names = {f"GSM{i + 1}": port for i, port in enumerate(fleet.ports)}
        lines = [
            f"devices = {', '.join(self.names)}",
            *(f"{name} = {path}" for name, path in spool.items()),
            f"logfile = {self.log_path}",
            f"infofile = {root / 'smsd.working'}",
            f"pidfile = {root / 'smsd.pid'}",
            "loglevel = 5",
            "delaytime = 1",
            "incoming_utf8 = yes",
            "",
            "[default]",
            "incoming = yes",
            "baudrate = 115200",
        ]
        for name, port in self.names.items():
            lines += ["", f"[{name}]", f"device = {port.path}"]
        conf = root / "smsd.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.out = (root / "smsd.out").open("wb")
        self.proc = subprocess.Popen(
            ["smsd", "-c", str(conf), "-t"], stdout=self.out, stderr=subprocess.STDOUT
        )
        self.log_offset = 0
        self.identified: set[str] = set()

    def ready(self) -> bool:
        """Every modem process has read its SIM's IMSI (it then polls for SMS)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"smsd exited with {self.proc.returncode}")
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        cut = data.rfind(b"\n") + 1
        self.log_offset += cut
        self.identified.update(_IMSI.findall(data[:cut].decode(errors="replace")))
        return len(self.identified) >= len(self.names)

    def pids(self) -> list[int]:
        return [] if self.proc is None else [self.proc.pid]

    def other_pids(self) -> dict[str, list[int]]:
        return {}

    def counters(self) -> dict[str, float]:
        return {}

    def deliveries(self) -> list[Delivery]:
        out = []
        now = time.time()
        with os.scandir(self.incoming) as entries:
            for entry in entries:
                if entry.name in self.seen or entry.name.startswith("."):
                    continue
                mtime = entry.stat().st_mtime
                if now - mtime < STABLE_S:
                    continue
                self.seen.add(entry.name)
                delivery = self.parse(Path(entry.path), mtime)
                if delivery is not None:
                    out.append(delivery)
        return out

    def parse(self, path: Path, mtime: float) -> Delivery | None:
        raw = path.read_bytes()
        head, sep, body = raw.partition(b"\n\n")
        if not sep:
            return None
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        sender = headers.get("From", "")
        if headers.get("From_TOA", "").startswith("91") and not sender.startswith("+"):
            sender = "+" + sender
        alphabet = headers.get("Alphabet", "")
        text = body.decode("utf-16-be" if alphabet == "UCS2" else "utf-8", errors="replace")
        port = self.names.get(headers.get("Modem", ""))
        number = port.number if port is not None else headers.get("Modem", "?")
        return Delivery(mtime, number, sender, text)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 30)
        self.out.close()

    def log_tail(self) -> str:
        return log_tail(self.log_path)


def _version() -> str:
    try:
        out = subprocess.run(["smsd", "-V"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    match = re.search(r"Version ([\d.]+)", out)
    return match.group(1) if match else out.strip()[:40]
