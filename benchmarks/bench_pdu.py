"""Decode throughput of muxd.pdu: ``python -m benchmarks.bench_pdu [N]``.

Decodes a mix of real vectors (tests/pdu/pdu_vectors.py: GSM 7-bit, UCS-2, alphanumeric
senders, concatenated parts, status reports, a bare TPDU) N times each and prints
decodes/s and µs per decode, overall and per kind.
"""

from __future__ import annotations

import sys
import time

from muxd.pdu import decode_pdu

MIX: dict[str, str] = {
    "gsm7 short": "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37",
    "gsm7 ext chars": (
        "07912104442961F4040B916171957291F800001120821105050A6AC8B2BC7C9A83C220F6DB7D2ECB41EDF27C"
        "1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE303D1D1F2F7DD0D4A"
        "BB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17"
    ),
    "gsm7 160 septets": (
        "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2EB359"
        "A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD5E0ED741ED37"
        "1D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E064D8D52D0BC2E"
        "07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966"
    ),
    "gsm7 concat": (
        "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D44479741F0B09C"
        "3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10"
    ),
    "ucs2 alnum": "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
    "ucs2 concat alnum": (
        "07919762020033F1400DD0CDF2396C7EBB010008415072411084618C0500035602010053004D005300200063"
        "006F00640065003A00200034003800350036002C00200063006F006E006600690072006D0061007400690"
        "06F006E0020006F00660020006100730073006F00630069006100740069006F006E0020006200650074007700"
        "650065006E0020006100630063006F0075006E007400200061006E00640020004D00650067"
    ),
    "status report": "07914356060013F1065A098136397339F7219011700463802190117004638030",
    "bare tpdu": "040491361900005150713220052308C8303A8C0EA3C3",
}


def bench(pdu: str, n: int) -> float:
    decode_pdu(pdu)  # warm up / validate
    start = time.perf_counter()
    for _ in range(n):
        decode_pdu(pdu)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20_000
    total_time = 0.0
    print(f"muxd.pdu decode benchmark, {n} decodes per vector")
    for name, pdu in MIX.items():
        elapsed = bench(pdu, n)
        total_time += elapsed
        print(f"  {name:<18} {n / elapsed:>10,.0f} decodes/s  {elapsed / n * 1e6:7.2f} µs/decode")
    count = n * len(MIX)
    print(
        f"  {'mix':<18} {count / total_time:>10,.0f} decodes/s  "
        f"{total_time / count * 1e6:7.2f} µs/decode"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
