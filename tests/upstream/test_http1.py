"""The HTTP/1.1 answer parser: vectors fed whole, byte by byte and in random pieces; any bytes
raise HttpProtocolError or nothing."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxd.upstream import http1
from muxd.upstream.http1 import Answer, HttpProtocolError, ResponseParser


def feed_pieces(raw: bytes, cuts: list[int], method: str = "POST", eof: bool = False) -> Answer:
    """``raw`` fed in the pieces ``cuts`` makes; the answer (fails if none, or if it came
    before the last byte)."""
    parser = ResponseParser(method)
    bounds = sorted({c for c in cuts if 0 < c < len(raw)})
    pieces = [raw[a:b] for a, b in zip([0, *bounds], [*bounds, len(raw)], strict=True)]
    answer = None
    for k, piece in enumerate(pieces):
        assert answer is None, "an answer before the last piece"
        answer = parser.feed(piece)
        if answer is not None:
            assert k == len(pieces) - 1
    if eof:
        assert answer is None
        answer = parser.feed_eof()
    assert answer is not None
    return answer


def every_way(raw: bytes, method: str = "POST", eof: bool = False) -> Answer:
    """Fed whole and byte by byte: the same answer both ways."""
    whole = feed_pieces(raw, [], method, eof)
    assert feed_pieces(raw, list(range(1, len(raw))), method, eof) == whole
    return whole


VECTORS: list[tuple[str, bytes, int, bytes, bool]] = [
    (
        "content-length",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Content-Length: 15\r\n\r\n{"response": 1}',
        200, b'{"response": 1}', True,
    ),
    (
        "chunked with extension and trailer",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=x\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
        200, b"hello world", True,
    ),
    (
        "interim 100 then the answer",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
        503, b"busy", True,
    ),
    (
        "204 has no body", b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, b"",
        True,
    ),
    (
        "connection close", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        200, b"ok", False,
    ),
    (
        "HTTP/1.0 keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", 200, b"ok",
        True,
    ),
    ("HTTP/1.0 default", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    (
        "chunked and a length: chunked wins, not reused",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        200, b"ok", False,
    ),
    (
        "repeated equal lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 200, b"ok", True,
    ),
    (
        "gzip", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        % len(gzip.compress(b'{"response":1}')) + gzip.compress(b'{"response":1}'),
        200, b'{"response":1}', True,
    ),
    (
        "zlib deflate",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n"
        % len(zlib.compress(b"abc")) + zlib.compress(b"abc"),
        200, b"abc", True,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status", "body", "keep"), [v[1:] for v in VECTORS],
                         ids=[v[0] for v in VECTORS])  # fmt: skip
def test_vectors_fed_whole_and_byte_by_byte(
    raw: bytes, status: int, body: bytes, keep: bool
) -> None:
    answer = every_way(raw)
    assert (answer.status, answer.body, answer.keep_alive) == (status, body, keep)


def test_raw_deflate_is_read_too() -> None:
    squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = squeezer.compress(b"raw") + squeezer.flush()
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(data)
    assert every_way(raw + data).body == b"raw"


def test_a_body_to_the_end_of_the_connection() -> None:
    raw = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>down</html>"
    answer = every_way(raw, eof=True)
    assert (answer.status, answer.body, answer.keep_alive) == (502, b"<html>down</html>", False)


def test_head_answer_has_no_body_whatever_its_length() -> None:
    answer = every_way(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", method="HEAD")
    assert (answer.body, answer.keep_alive) == (b"", True)


def test_headers_lower_cased_repeats_joined_and_charset() -> None:
    raw = (
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 30\r\nX-A: 1\r\nx-a: 2\r\n"
        b'Content-Type: text/plain; charset="windows-1251"\r\nContent-Length: 2\r\n\r\n\xcf\xf0'
    )
    answer = every_way(raw)
    assert answer.header("retry-after") == "30"
    assert answer.header("x-a") == "1, 2"
    assert answer.reason == "Too Many"
    assert answer.charset() == "windows-1251"
    assert answer.text() == "Пр"


def test_an_unknown_charset_reads_as_utf8_without_raising() -> None:
    raw = b"HTTP/1.1 500 X\r\nContent-Type: text/plain; charset=klingon\r\n"
    raw += b"Content-Length : 3\r\n\r\na\xffb"  # a space before the colon is tolerated
    assert every_way(raw).text() == "a\ufffdb"


def test_bytes_after_a_complete_answer_make_it_not_reusable() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    answer = ResponseParser("GET").feed(raw)
    assert answer is not None
    assert (answer.body, answer.keep_alive) == (b"ok", False)


BAD = [
    ("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    ("status not a number", b"HTTP/1.1 2x0 OK\r\n\r\n"),
    ("unicode digits", "HTTP/1.1 2²0 OK\r\n\r\n".encode("latin-1", "replace")),
    ("header without colon", b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n"),
    ("space inside a name", b"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\nok"),
    ("folded header", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    ("bad length", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n"),
    ("differing lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"),
    ("bad chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n"),
    ("chunk without CRLF", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX"),
    ("bad gzip", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"),
    ("unknown encoding", b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\na"),
    ("switching protocols", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
]


@pytest.mark.parametrize("raw", [b for _, b in BAD], ids=[n for n, _ in BAD])
def test_malformed_answers_raise_protocol_errors(raw: bytes) -> None:
    with pytest.raises(HttpProtocolError):
        ResponseParser("GET").feed(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-",
    ],
    ids=["nothing", "short body", "short chunk", "head cut"],
)
def test_an_answer_cut_short_by_the_connection_raises(raw: bytes) -> None:
    parser = ResponseParser("POST")
    assert parser.feed(raw) is None
    with pytest.raises(HttpProtocolError):
        parser.feed_eof()


def test_bounds_on_head_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HttpProtocolError, match="head longer"):
        ResponseParser("GET").feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * http1.MAX_HEAD)
    with pytest.raises(HttpProtocolError, match="body longer"):
        ResponseParser("GET").feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (http1.MAX_BODY + 1)
        )
    monkeypatch.setattr(http1, "MAX_BODY", 1000)
    bomb = gzip.compress(b"0" * 5000)
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    with pytest.raises(HttpProtocolError, match="inflates past"):
        ResponseParser("GET").feed(raw + bomb)


def test_feeding_after_the_answer_is_an_error() -> None:
    parser = ResponseParser("GET")
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") is not None
    with pytest.raises(HttpProtocolError):
        parser.feed(b"x")
    with pytest.raises(HttpProtocolError):
        parser.feed_eof()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = bytearray(), body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[: max(1, size)], rest[max(1, size) :]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    if rest:
        out += b"%X\r\n%s\r\n" % (len(rest), rest)
    return bytes(out + b"0\r\n\r\n")


@given(
    body=st.binary(max_size=300),
    sizes=st.lists(st.integers(1, 64), max_size=10),
    cuts=st.lists(st.integers(0, 800), max_size=20),
    framing=st.sampled_from(["length", "chunked", "close", "gzip"]),
)
def test_any_body_in_any_framing_and_any_pieces(
    body: bytes, sizes: list[int], cuts: list[int], framing: str
) -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: t\r\n"
    eof = False
    if framing == "length":
        raw = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        raw = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, sizes)
    elif framing == "gzip":
        packed = gzip.compress(body)
        raw = head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    else:
        raw, eof = head + b"\r\n" + body, True
    answer = feed_pieces(raw, cuts, eof=eof)
    assert answer.body == body
    assert answer.keep_alive is (framing != "close")


@given(noise=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_any_bytes_give_an_answer_nothing_or_a_protocol_error(
    noise: bytes, cuts: list[int]
) -> None:
    parser = ResponseParser("GET")
    bounds = sorted({c for c in cuts if 0 < c < len(noise)})
    try:
        for a, b in zip([0, *bounds], [*bounds, len(noise)], strict=True):
            if parser.feed(noise[a:b]) is not None:
                return
        parser.feed_eof()
    except HttpProtocolError:
        pass


@given(
    junk=st.binary(min_size=1, max_size=60).filter(lambda b: b"\r\n" not in b),
)
def test_noise_inside_a_valid_head_is_refused_or_read_consistently(junk: bytes) -> None:
    # A valid answer with a noisy header line: the parser refuses it or reads it; fed whole
    # or byte by byte, the outcome is the same.
    raw = b"HTTP/1.1 200 OK\r\nX-Noise: " + junk + b"\r\nContent-Length: 2\r\n\r\nok"
    outcomes = []
    for cuts in ([], list(range(1, len(raw)))):
        try:
            outcomes.append(feed_pieces(raw, cuts))
        except HttpProtocolError as exc:
            outcomes.append(type(exc))  # type: ignore[arg-type]
    assert outcomes[0] == outcomes[1]


# -- what real servers and proxies send (from a hostile review) ------------------------------

ACK = b'{"response":1}'


def test_a_content_length_of_thousands_of_digits_is_a_protocol_error() -> None:
    # int() refuses more than 4300 digits with ValueError, which would leave data_received.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 4400 + b"2\r\n\r\nok"
    with pytest.raises(HttpProtocolError, match="Content-Length"):
        ResponseParser("POST").feed(head)


@given(
    name=st.sampled_from(["Content-Length", "Transfer-Encoding", "Content-Encoding"]),
    value=st.one_of(
        st.integers(0, 6000).map(lambda n: "7" * n),
        st.text(st.sampled_from("0123456789abcdefx, ;chunked\t"), max_size=40),
    ),
    body=st.binary(max_size=40),
)
def test_any_framing_header_gives_an_answer_nothing_or_a_protocol_error(
    name: str, value: str, body: bytes
) -> None:
    parser = ResponseParser("POST")
    try:
        if parser.feed(f"HTTP/1.1 200 OK\r\n{name}: {value}\r\n\r\n".encode() + body) is None:
            parser.feed_eof()
    except HttpProtocolError:
        pass


def test_a_gzip_body_of_several_members_is_read_whole() -> None:
    # RFC 1952 2.2: a proxy compressing as it streams may send several members.
    packed = gzip.compress(ACK[:6]) + gzip.compress(ACK[6:])
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    assert every_way(raw + packed).body == ACK


def test_a_head_with_bare_lf_line_ends_is_read() -> None:
    # RFC 9112 2.2 lets a recipient take a lone LF as a line end (aiohttp does): else the
    # acknowledgement is lost and the SMS sent again.
    answer = every_way(b"HTTP/1.1 200 OK\nContent-Length: 14\n\n" + ACK)
    assert (answer.status, answer.body) == (200, ACK)


def test_a_transfer_coding_other_than_chunked_is_refused() -> None:
    packed = gzip.compress(ACK)
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    raw += b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    with pytest.raises(HttpProtocolError, match="Transfer-Encoding"):
        ResponseParser("POST").feed(raw)


def test_a_repeated_single_value_header_keeps_its_first_value() -> None:
    raw = b"HTTP/1.1 429 X\r\nRetry-After: 60\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n"
    assert every_way(raw).header("retry-after") == "60"
