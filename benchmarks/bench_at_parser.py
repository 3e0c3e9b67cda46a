"""Throughput of the sans-I/O AT parser on the SMS receive path.

One transcript is what a modem with echo off sends for one received SMS: the ``+CMTI`` URC,
the ``AT+CMGR`` answer (header, a full 160-character GSM-7 message as PDU, OK) and the
``AT+CMGD`` OK -- 5 lines. Run: ``python -m benchmarks.bench_at_parser [-n N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from muxd.at import AtParser, Final, Info, Urc

# ModemManager test-sms-part-3gpp.c test_pdu_dcsf1: 160 septets, TPDU length 155.
PDU = (
    "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2EB359A0"
    "3FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD5E0ED741ED371D44"
    "2E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E064D8D52D0BC2E07DDEF"
    "77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966"
)
CMTI = b'\r\n+CMTI: "SM",3\r\n'
CMGR = f"\r\n+CMGR: 0,,155\r\n{PDU}\r\n\r\nOK\r\n".encode()
CMGD = b"\r\nOK\r\n"
LINES_PER_SMS = 5
BYTES_PER_SMS = len(CMTI) + len(CMGR) + len(CMGD)

Chunker = Callable[[bytes], list[bytes]]


def chunks_of(size: int) -> Chunker:
    def split(data: bytes) -> list[bytes]:
        return [data[i : i + size] for i in range(0, len(data), size)]

    return split


def run(n: int, chunker: Chunker) -> float:
    """Seconds to parse ``n`` SMS transcripts fed as ``chunker`` splits them."""
    parser = AtParser()
    cmti, cmgr, cmgd = chunker(CMTI), chunker(CMGR), chunker(CMGD)
    feed = parser.feed
    events = 0
    start = time.perf_counter()
    for _ in range(n):
        for chunk in cmti:
            events += len(feed(chunk))
        parser.command_sent("AT+CMGR=3")
        for chunk in cmgr:
            events += len(feed(chunk))
        parser.command_sent("AT+CMGD=3")
        for chunk in cmgd:
            events += len(feed(chunk))
    elapsed = time.perf_counter() - start
    assert events == 4 * n, events  # Urc, Info(pdu), Final, Final
    return elapsed


def check_once() -> None:
    parser = AtParser()
    assert parser.feed(CMTI) == [Urc("+CMTI", '"SM",3', None, '+CMTI: "SM",3')]
    parser.command_sent("AT+CMGR=3")
    assert parser.feed(CMGR) == [Info("+CMGR: 0,,155", PDU), Final("OK", None, "OK")]


def bytewise_line(length: int) -> float:
    """Microseconds per byte to feed one ``length``-byte line one byte at a time."""
    parser = AtParser(max_line=length + 1)
    parser.command_sent("AT+CMGL=4")
    data = [b"A"] * length + [b"\r"]
    start = time.perf_counter()
    for byte in data:
        parser.feed(byte)
    return (time.perf_counter() - start) / len(data) * 1e6


def main(argv: list[str] | None = None) -> int:
    args_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args_parser.add_argument("-n", type=int, default=20_000, help="SMS transcripts per run")
    args = args_parser.parse_args(argv)
    check_once()
    print(
        f"AT parser: {args.n} SMS transcripts, {LINES_PER_SMS} lines / {BYTES_PER_SMS} bytes each"
    )
    for label, chunker in [
        ("whole reads", chunks_of(1 << 20)),
        ("64-byte reads", chunks_of(64)),
        ("1-byte reads", chunks_of(1)),
    ]:
        n = args.n if label != "1-byte reads" else max(1, args.n // 20)
        elapsed = min(run(n, chunker) for _ in range(3))
        print(
            f"  {label:14} {n * LINES_PER_SMS / elapsed:>12,.0f} lines/s"
            f"  {elapsed / n * 1e6:8.2f} µs/SMS  {n * BYTES_PER_SMS / elapsed / 1e6:6.1f} MB/s"
        )
    short, long = bytewise_line(1_000), bytewise_line(100_000)
    print(f"  1-byte feeds of one line: {short:.3f} µs/byte at 1 kB, {long:.3f} µs/byte at 100 kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
