"""Coverage-guided fuzzing of the AT parser (atheris): no input may raise.

    python -m tests.fuzz.fuzz_at -runs=1000000

The fuzzer's bytes are split into a command (sent before feeding, as the session does) and a
stream fed in chunks whose sizes come from the input too. Any exception is a finding.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from muxd.at import AtParser

COMMANDS = ("AT+CMGR=3", "AT+CMGL=4", "AT+CSQ", "AT+CREG?", "AT+CGSN", "AT+CUSD=1", "ATE0", "")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parser = AtParser(max_line=fdp.ConsumeIntInRange(16, 1024))
    while fdp.remaining_bytes():
        action = fdp.ConsumeIntInRange(0, 9)
        if action == 0:
            parser.command_sent(COMMANDS[fdp.ConsumeIntInRange(0, len(COMMANDS) - 1)])
        elif action == 1:
            parser.command_done()
        else:
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64))
            parser.feed(chunk)
        assert parser.buffered <= 4096


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
