"""SMS-DELIVER decode throughput, muxd.pdu side by side with PyPI decoders.

Run: ``python -m benchmarks.pdu_decode [--seconds S] [--rounds R] [--json OUT]``
(``make bench-pdu`` installs the peers first).

The corpus is the modem form (``+CMGR``/``+CMGL`` hex with SMSC prefix) of
SMS-DELIVER PDUs: full 160-character GSM 7-bit and 70-character UCS-2 messages,
parts of concatenated messages (8- and 16-bit references, both alphabets),
international, national and alphanumeric senders -- built with muxd's encoder from
a fixed seed -- plus every SMS-DELIVER of tests/pdu/pdu_vectors.py that carries an SMSC
prefix. Every decoder gets the same hex strings, one call per PDU, in one process and
one thread (a single core). A peer's exception on a PDU counts as a failure (the loop goes on); a
result whose text (or 8-bit data) differs from muxd's counts in ``text≠muxd``.

Each round runs every decoder, in turn, over the corpus again and again for at least
``--seconds``; the best round per decoder is reported (as ``timeit`` does: the
least disturbed run). muxd's µs per single-part PDU is timed the same way on the
single-part subset.

Peers: ``python-messaging`` (``messaging.sms.SmsDeliver(hex)``) and ``smspdudecoder``
(``smspdudecoder.fields.SMSDeliver.decode(StringIO(hex))``, its lowest-level full
decode; needs ``bitstring<5``). Both are benchmark-only: ``pip install -e '.[bench-peers]'``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import io
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from muxd.pdu import SmsDeliver, decode_pdu, encode_deliver
from muxd.pdu.gsm7 import DEFAULT_LOCKING
from tests.pdu import pdu_vectors as vectors

TARGET_SPEEDUP = 5.0
TARGET_SINGLE_US = 15.0
INSTALL_HINT = (
    "make bench-pdu   (or: .venv/bin/pip install -e '.[bench-peers]', i.e. "
    "smspdudecoder 'bitstring<5' python-messaging)"
)

Decode = Callable[[str], Any]
TextOf = Callable[[Any], object]

# --- corpus ---------------------------------------------------------------------------

GSM_TEXT_CHARS = [c for i, c in enumerate(DEFAULT_LOCKING) if i != 0x1B]
UCS2_TEXT_CHARS = list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙ 0123456789.,!?-")
ALNUM_SENDERS = ("Megafon", "InternetSMS", "Bank-X", "VK", "Google", "Telegram", "TAXI24")


@dataclass
class Corpus:
    pdus: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, pdus: Sequence[str]) -> None:
        self.pdus.extend(pdus)
        self.kinds[kind] = self.kinds.get(kind, 0) + len(pdus)


def _sender(rng: random.Random, i: int) -> str:
    kind = i % 3
    if kind == 0:
        return "+" + str(rng.randrange(10**10, 10**11))  # international
    if kind == 1:
        return str(rng.randrange(10**9, 10**10))  # national / unknown TON
    return ALNUM_SENDERS[i % len(ALNUM_SENDERS)]


def build_corpus(seed: int = 2024) -> Corpus:
    rng = random.Random(seed)
    when = datetime.datetime(
        2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=3))
    )
    smsc = "+79037011111"
    corpus = Corpus()

    def enc(sender: str, text: str, **kw: Any) -> list[str]:
        return [p.hex for p in encode_deliver(sender, text, scts=when, smsc=smsc, **kw)]

    def text(chars: list[str], n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    for i in range(24):
        corpus.add(
            "gsm7 160-char", enc(_sender(rng, i), text(GSM_TEXT_CHARS, 160), encoding="gsm7")
        )
    for i in range(24):
        corpus.add("ucs2 70-char", enc(_sender(rng, i), text(UCS2_TEXT_CHARS, 70)))
    for i in range(4):  # 3 parts each
        corpus.add(
            "gsm7 part ref8",
            enc(
                _sender(rng, i), text(GSM_TEXT_CHARS, 400), encoding="gsm7", ref=rng.randrange(256)
            ),
        )
    for i in range(2):
        corpus.add(
            "gsm7 part ref16",
            enc(_sender(rng, i + 1), text(GSM_TEXT_CHARS, 300), encoding="gsm7",
                ref=rng.randrange(65536), ref_bits=16),
        )  # fmt: skip
    for i in range(3):
        corpus.add(
            "ucs2 part ref8",
            enc(_sender(rng, i + 2), text(UCS2_TEXT_CHARS, 150), ref=rng.randrange(256)),
        )
    for i in range(2):
        corpus.add(
            "ucs2 part ref16",
            enc(_sender(rng, i), text(UCS2_TEXT_CHARS, 200), ref=rng.randrange(65536), ref_bits=16),
        )
    corpus.add("§5 vector", _section5_delivers())
    return corpus


def _section5_delivers() -> list[str]:
    """Every SMS-DELIVER of the test vectors with an SMSC prefix (the form both peers expect)."""
    out = []
    for pdu in vectors.VALID:
        sms = decode_pdu(pdu)
        if isinstance(sms, SmsDeliver) and sms.smsc is not None:
            out.append(pdu)
    return out


# --- decoders -------------------------------------------------------------------------


@dataclass
class Decoder:
    name: str
    version: str
    decode: Decode
    text_of: TextOf


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _muxd() -> Decoder:
    def text_of(sms: Any) -> object:
        return sms.text if sms.encoding in ("gsm7", "ucs2") else sms.user_data

    return Decoder("muxd", _version("muxd"), decode_pdu, text_of)


def _python_messaging() -> Decoder:
    from messaging.sms import SmsDeliver as MessagingDeliver

    def text_of(sms: Any) -> object:
        return sms.text

    return Decoder("python-messaging", _version("python-messaging"), MessagingDeliver, text_of)


def _smspdudecoder() -> Decoder:
    from smspdudecoder.fields import SMSDeliver as QottoDeliver

    qotto_decode = QottoDeliver.decode
    string_io = io.StringIO

    def decode(pdu: str) -> Any:
        return qotto_decode(string_io(pdu))

    def text_of(sms: Any) -> object:
        return sms["user_data"]["data"]

    return Decoder("smspdudecoder", _version("smspdudecoder"), decode, text_of)


def load_peers() -> tuple[list[Decoder], list[str]]:
    peers: list[Decoder] = []
    missing: list[str] = []
    for name, loader in (
        ("python-messaging", _python_messaging),
        ("smspdudecoder", _smspdudecoder),
    ):
        try:
            peers.append(loader())
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    return peers, missing


# --- measurement ----------------------------------------------------------------------


def check(decoder: Decoder, corpus: Sequence[str], expected: Sequence[object]) -> tuple[int, int]:
    """(failures, results whose text differs from muxd's) over one pass."""
    failures = mismatches = 0
    for pdu, want in zip(corpus, expected, strict=True):
        try:
            got = decoder.text_of(decoder.decode(pdu))
        except Exception:  # noqa: BLE001 - a peer's failure on one PDU is data, not a crash
            failures += 1
            continue
        if got != want:
            mismatches += 1
    return failures, mismatches


def timed(decode: Decode, corpus: Sequence[str], seconds: float) -> tuple[int, float]:
    """Decode the corpus repeatedly for at least ``seconds``; (PDUs decoded, elapsed s)."""
    clock = time.perf_counter
    n = 0
    start = clock()
    while True:
        for pdu in corpus:
            try:
                decode(pdu)
            except Exception:  # noqa: BLE001 - counted by check(); same cost for every decoder
                pass
        n += len(corpus)
        elapsed = clock() - start
        if elapsed >= seconds:
            return n, elapsed


@dataclass
class Result:
    decoder: Decoder
    failures: int
    mismatches: int
    best_us: float = float("inf")

    @property
    def per_second(self) -> float:
        return 1e6 / self.best_us


def run(seconds: float, rounds: int, peers: list[Decoder], corpus: Corpus) -> dict[str, Any]:
    muxd = _muxd()
    pdus = corpus.pdus
    decoded = [decode_pdu(p) for p in pdus]
    expected = [muxd.text_of(s) for s in decoded]
    single = [
        p
        for p, s in zip(pdus, decoded, strict=True)
        if isinstance(s, SmsDeliver) and s.concat is None
    ]
    results = [Result(d, *check(d, pdus, expected)) for d in (muxd, *peers)]
    kind_of = _kind_list(corpus)
    subsets = {
        kind: [p for p, k in zip(pdus, kind_of, strict=True) if k == kind] for kind in corpus.kinds
    }
    single_us = float("inf")
    by_kind = dict.fromkeys(subsets, float("inf"))
    for _ in range(rounds):
        for r in results:
            n, elapsed = timed(r.decoder.decode, pdus, seconds)
            r.best_us = min(r.best_us, elapsed / n * 1e6)
        n, elapsed = timed(decode_pdu, single, seconds)
        single_us = min(single_us, elapsed / n * 1e6)
        for kind, subset in subsets.items():  # muxd alone, per kind (informative)
            n, elapsed = timed(decode_pdu, subset, seconds / 4)
            by_kind[kind] = min(by_kind[kind], elapsed / n * 1e6)
    fastest = max(results[1:], key=lambda r: r.per_second, default=None)
    alnum = sum(
        1 for s in decoded if isinstance(s, SmsDeliver) and (s.originator_toa & 0x70) == 0x50
    )
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "seconds_per_round": seconds,
        "rounds": rounds,
        "corpus": {
            "pdus": len(pdus),
            "single_part": len(single),
            "alphanumeric_senders": alnum,
            "kinds": corpus.kinds,
        },
        "decoders": [
            {
                "name": r.decoder.name,
                "version": r.decoder.version,
                "pdus_per_second": round(r.per_second, 1),
                "us_per_pdu": round(r.best_us, 3),
                "failures": r.failures,
                "text_differs_from_muxd": r.mismatches if r.decoder is not muxd else None,
            }
            for r in results
        ],
        "fastest_peer": None if fastest is None else fastest.decoder.name,
        "speedup_over_fastest_peer": None
        if fastest is None
        else round(results[0].per_second / fastest.per_second, 2),
        "muxd_us_per_single_part_pdu": round(single_us, 3),
        "muxd_us_per_pdu_by_kind": {k: round(v, 3) for k, v in by_kind.items()},
    }


def _kind_list(corpus: Corpus) -> list[str]:
    return [kind for kind, n in corpus.kinds.items() for _ in range(n)]


# --- report ---------------------------------------------------------------------------


def report(res: dict[str, Any], missing: list[str]) -> str:
    c = res["corpus"]
    kinds = ", ".join(f"{k} x{n}" for k, n in c["kinds"].items())
    lines = [
        f"muxd PDU decode benchmark: Python {res['python']} ({res['implementation']}, "
        f"{res['machine']}), one process, best of {res['rounds']} rounds of >= "
        f"{res['seconds_per_round']:g} s per decoder",
        f"corpus: {c['pdus']} SMS-DELIVER PDUs with SMSC prefix ({kinds}); "
        f"{c['single_part']} single-part, {c['alphanumeric_senders']} alphanumeric senders",
        "",
        f"{'decoder':<18} {'version':>8} {'PDUs/s':>10} {'µs/PDU':>8} {'failures':>9} "
        f"{'text≠muxd':>10}",
    ]
    for d in res["decoders"]:
        differs = "-" if d["text_differs_from_muxd"] is None else str(d["text_differs_from_muxd"])
        lines.append(
            f"{d['name']:<18} {d['version']:>8} {d['pdus_per_second']:>10,.0f} "
            f"{d['us_per_pdu']:>8.2f} {d['failures']:>9} {differs:>10}"
        )
    lines.append("")
    speedup = res["speedup_over_fastest_peer"]
    if speedup is None and res["peers_skipped"]:
        lines.append("peer decoders skipped (--muxd-only): no speed-up figure")
    elif speedup is None:
        lines.append("no peer decoder installed: no speed-up figure. Install them with:")
        lines.append(f"  {INSTALL_HINT}")
    else:
        verdict = "ok" if speedup >= TARGET_SPEEDUP else "MISSED"
        lines.append(
            f"muxd speed-up over the fastest peer ({res['fastest_peer']}): {speedup:.1f}x "
            f"(target >= {TARGET_SPEEDUP:g}x: {verdict})"
        )
    single = res["muxd_us_per_single_part_pdu"]
    verdict = "ok" if single < TARGET_SINGLE_US else "MISSED"
    lines.append(
        f"muxd µs per single-part PDU: {single:.2f} (target < {TARGET_SINGLE_US:g} µs: {verdict})"
    )
    lines.append(
        "muxd µs/PDU by kind: "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["muxd_us_per_pdu_by_kind"].items())
    )
    if missing:
        lines.append("")
        lines.append("not installed: " + "; ".join(missing))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.pdu_decode", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--seconds", type=float, default=1.0, help="minimum seconds per decoder per round"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the best one per decoder counts")
    ap.add_argument("--json", metavar="OUT", help="also write the numbers as JSON to OUT")
    ap.add_argument("--muxd-only", action="store_true", help="skip the peer decoders")
    args = ap.parse_args(argv)
    peers, missing = ([], []) if args.muxd_only else load_peers()
    if missing:
        print(f"peer decoders missing: {'; '.join(missing)}", file=sys.stderr)
        print(f"install them for the comparison: {INSTALL_HINT}", file=sys.stderr)
    res = run(args.seconds, args.rounds, peers, build_corpus())
    res["peers_skipped"] = args.muxd_only
    print(report(res, missing))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
