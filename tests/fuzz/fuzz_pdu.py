"""Coverage-guided fuzzing of the PDU decoder (atheris): only PduError may escape.

    python -m tests.fuzz.fuzz_pdu -runs=1000000

Inputs are decoded as raw octets, as hex text, and with a claimed TPDU length, the three ways
modems hand PDUs to muxd.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from muxd.pdu import PduError, decode_pdu, reassemble
    from muxd.pdu.records import SmsDeliver


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    length = fdp.ConsumeIntInRange(0, 200) if mode == 2 else None
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if mode == 0:
            decoded = decode_pdu(payload)
        elif mode == 1:
            decoded = decode_pdu(payload.hex())
        elif mode == 2:
            decoded = decode_pdu(payload.hex().upper(), tpdu_length=length)
        else:
            decoded = decode_pdu(payload.decode("latin-1"))
    except PduError:
        return
    if isinstance(decoded, SmsDeliver) and decoded.concat is not None:
        try:
            reassemble([decoded])
        except PduError:
            pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
