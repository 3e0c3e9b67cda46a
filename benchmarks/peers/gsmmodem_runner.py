"""python-gsmmodem-new as a peer: open every pty with ``GsmModem``, log every SMS received.

    python benchmarks/peers/gsmmodem_runner.py --ports FILE --out FILE

``--ports``: one device path per line. Each port gets its own ``GsmModem`` (PDU mode, no
delivery reports: the library's defaults otherwise) whose ``smsReceivedCallbackFunc`` appends
one JSON line ``{"t", "port", "from", "message"}`` (ASCII-escaped) to ``--out`` and flushes
it; the library reads the SMS on ``+CMTI`` and deletes it after the callback. Prints
``ready OPEN FAILED`` once every port was tried, then runs until SIGTERM/SIGINT or EOF on
stdin.

A stand-alone script (the peer is never imported by muxd or by the harness's process).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from gsmmodem.modem import GsmModem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", required=True, help="file with one device path per line")
    parser.add_argument("--out", required=True, help="JSON-lines file of received SMS")
    parser.add_argument("--baudrate", type=int, default=115200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with open(args.ports, encoding="utf-8") as fh:
        ports = [line.strip() for line in fh if line.strip()]
    out = open(args.out, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
    lock = threading.Lock()

    def callback_for(port: str) -> Any:
        def received(sms: Any) -> None:
            record = {"t": time.time(), "port": port, "from": sms.number, "message": sms.text}
            # ASCII JSON: the library hands UCS-2 texts over as UTF-16 code units, so a non-BMP
            # character (an emoji) arrives as two lone surrogates that cannot be encoded to
            # UTF-8; escaped, they read back as the right character.
            line = json.dumps(record) + "\n"
            with lock:
                out.write(line)
                out.flush()

        return received

    modems = []
    failed = 0
    for port in ports:
        modem = GsmModem(
            port, args.baudrate, smsReceivedCallbackFunc=callback_for(port), requestDelivery=False
        )
        modem.smsTextMode = False
        try:
            modem.connect()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other ports
            print(f"{port}: connect failed: {exc!r}", file=sys.stderr, flush=True)
            failed += 1
            continue
        modems.append(modem)
    print(f"ready {len(modems)} {failed}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def stop_on_eof() -> None:
        sys.stdin.read()  # the harness closes our stdin to stop us
        stop.set()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    stop.wait()
    for modem in modems:
        try:
            modem.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
