"""HTTP/1.1 answers, read without I/O: bytes in, one :class:`Answer` out.

The upstream client (:mod:`muxd.upstream.http_client`) writes a request and feeds what the
connection returns to a :class:`ResponseParser` made for it, the way the AT parser is fed a
modem's bytes: whole, in pieces or a byte at a time, with the same result. It reads what an
HTTP/1.1 origin or proxy may send in answer to one request (RFC 9112):

- interim ``1xx`` answers are skipped; ``HEAD``, ``204`` and ``304`` answers have no body;
- a body by ``Transfer-Encoding: chunked`` (which wins over a ``Content-Length``, and then the
  connection is not reused), by ``Content-Length``, or to the end of the connection;
- ``Content-Encoding`` gzip, x-gzip or deflate is undone (bounded: :data:`MAX_BODY`);
- whether the connection may carry the next request (``keep_alive``).

Anything else (a bad status line, a header without a colon, a length that is not a number, a
head or body past its bound) raises :class:`HttpProtocolError`: the connection is then closed,
never reused, so what follows cannot be read as the answer to a later request.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# Bounds on what one answer may hold (Onlinesim's answers are a few hundred bytes).
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
MAX_CHUNK_LINE = 1024

_NO_BODY_STATUSES = frozenset({204, 304})
# Fields that hold one value (RFC 9110 5.3): a repeat is ignored, as aiohttp's headers.get did
# (joined, "60, 60" is no Retry-After at all).
SINGLETONS = frozenset({"retry-after", "location", "content-type"})
# A Content-Length longer than this is refused (int() refuses > 4300 digits with ValueError).
_MAX_LENGTH_DIGITS = 18
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class HttpProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: header names lower-cased (a repeated header's values joined by
    ``", "``), the body decoded from its content encoding."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def charset(self, default: str = "utf-8") -> str:
        """The body's charset from ``Content-Type`` (``default`` when none is declared)."""
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"') or default
        return default

    def text(self) -> str:
        """The body as text in its declared charset (an unknown one: UTF-8), never raising."""
        try:
            return self.body.decode(self.charset(), "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")


class ResponseParser:
    """The answer to one request (``method``): :meth:`feed` the bytes as they come; it returns
    the :class:`Answer` once complete. :meth:`feed_eof` when the connection ends."""

    def __init__(self, method: str) -> None:
        self._head_only = method.upper() == "HEAD"
        self._buf = bytearray()
        self._state = "head"  # head, length, chunk_size, chunk_data, chunk_end, trailers, close
        self._status = 0
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        self._remaining = 0  # length: bytes of body left; chunk_data: of this chunk
        self._body = bytearray()
        self._scan = 0  # head: where the search for its end resumes
        self._eol: bytes | None = None  # head: its line end, CRLF or LF
        self.done = False

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> Answer | None:
        if self.done:
            raise HttpProtocolError("bytes after the answer was complete")
        self._buf += data
        return self._advance()

    def feed_eof(self) -> Answer:
        """The connection ended: the answer if its body runs to the end of the connection,
        else :class:`HttpProtocolError` (the answer was cut short)."""
        if self.done:
            raise HttpProtocolError("answer already complete")
        if self._state == "close":
            self._body += self._buf
            self._buf.clear()
            return self._finish()
        if self._state == "head" and not self._buf:
            raise HttpProtocolError("connection closed before any answer")
        raise HttpProtocolError(f"connection closed mid-answer ({self._state})")

    # -- states --------------------------------------------------------------------------------

    def _advance(self) -> Answer | None:
        while True:
            state = self._state
            if state == "head":
                if not self._read_head():
                    return None
                if self._state == "done":
                    return self._finish()
            elif state == "length":
                if not self._take_remaining():
                    return None
                return self._finish()
            elif state == "close":
                self._body += self._buf
                self._buf.clear()
                self._check_size(len(self._body))
                return None
            elif state == "chunk_size":
                line = self._line(MAX_CHUNK_LINE, "chunk size line")
                if line is None:
                    return None
                size_text = line.split(b";", 1)[0].strip()
                if not size_text or size_text.strip(_HEX_DIGITS):
                    raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                self._check_size(len(self._body) + size)
                self._remaining = size
                self._state = "chunk_data" if size else "trailers"
            elif state == "chunk_data":
                if not self._take_remaining():
                    return None
                self._state = "chunk_end"
            elif state == "chunk_end":
                if len(self._buf) < 2:
                    return None
                if self._buf[:2] != b"\r\n":
                    raise HttpProtocolError("chunk not followed by CRLF")
                del self._buf[:2]
                self._state = "chunk_size"
            elif state == "trailers":
                line = self._line(MAX_HEAD, "trailer")
                if line is None:
                    return None
                if not line:
                    return self._finish()
            else:  # pragma: no cover - done is returned above
                raise AssertionError(state)

    def _take_remaining(self) -> bool:
        """Move up to ``_remaining`` bytes to the body; True once none are left to come."""
        take = min(self._remaining, len(self._buf))
        self._body += self._buf[:take]
        del self._buf[:take]
        self._remaining -= take
        return not self._remaining

    def _line(self, bound: int, what: str) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > bound:
                raise HttpProtocolError(f"{what} longer than {bound} bytes")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _head_end(self) -> tuple[int, int] | None:
        """Where the head ends and the body starts. Lines end as the status line does: CRLF,
        or a bare LF throughout (RFC 9112 2.2 lets a recipient take it; aiohttp does). The
        search resumes where the last one stopped (linear in the head, however fed)."""
        buf = self._buf
        if self._eol is None:
            first = buf.find(b"\n")
            if first < 0:
                return None
            self._eol = b"\r\n" if first > 0 and buf[first - 1] == 13 else b"\n"
        blank = self._eol * 2
        end = buf.find(blank, self._scan)
        if end < 0:
            self._scan = max(0, len(buf) - len(blank) + 1)
            return None
        return end, end + len(blank)

    def _read_head(self) -> bool:
        found = self._head_end()
        if found is None:
            if len(self._buf) > MAX_HEAD:
                raise HttpProtocolError(f"answer head longer than {MAX_HEAD} bytes")
            return False
        end, start = found
        if end > MAX_HEAD:
            raise HttpProtocolError(f"answer head longer than {MAX_HEAD} bytes")
        eol = (self._eol or b"\r\n").decode()
        lines = bytes(self._buf[:end]).decode("latin-1").split(eol)
        del self._buf[:start]
        self._scan, self._eol = 0, None
        version, status, reason = _status_line(lines[0])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line[:1] in (" ", "\t"):
                raise HttpProtocolError("obsolete header line folding")
            name, colon, value = line.partition(":")
            # Whitespace before the colon is tolerated (RFC 9112 5.1 has proxies remove it).
            name = name.rstrip(" \t").lower()
            if not colon or not name or " " in name or "\t" in name:
                raise HttpProtocolError(f"bad header line {line[:60]!r}")
            value = value.strip()
            if name not in headers:
                headers[name] = value
            elif name not in SINGLETONS:
                headers[name] = f"{headers[name]}, {value}"
        if 100 <= status < 200 and status != 101:
            return True  # an interim answer: the real one follows (state stays "head")
        if status == 101:
            raise HttpProtocolError("101 Switching Protocols to a plain request")
        self._status, self._reason, self._headers = status, reason, headers
        connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        if self._head_only or status in _NO_BODY_STATUSES:
            self._state = "done"
            return True
        coding = headers.get("transfer-encoding")
        if coding is not None:
            codings = [c.strip().lower() for c in coding.split(",") if c.strip()]
            if any(c not in ("chunked", "identity") for c in codings):
                # gzip, chunked: a transfer coding this parser does not undo; its bytes must
                # never be read as the body.
                raise HttpProtocolError(f"unsupported Transfer-Encoding {coding[:40]!r}")
            if not codings or codings[-1] != "chunked":
                self._to_close()  # RFC 9112 6.3: read until the connection ends
                return True
            if "content-length" in headers:
                self._keep_alive = False  # both: chunked wins, the connection is not reused
            self._state = "chunk_size"
            return True
        length = headers.get("content-length")
        if length is None:
            self._to_close()
            return True
        values = {v.strip() for v in length.split(",")}
        text = next(iter(values))
        if len(values) != 1 or not _is_number(text) or len(text) > _MAX_LENGTH_DIGITS:
            raise HttpProtocolError(f"bad Content-Length {length[:40]!r}")
        self._remaining = int(next(iter(values)))
        self._check_size(self._remaining)
        self._state = "length"
        return True

    def _to_close(self) -> None:
        self._keep_alive = False
        self._state = "close"

    def _check_size(self, size: int) -> None:
        if size > MAX_BODY:
            raise HttpProtocolError(f"answer body longer than {MAX_BODY} bytes")

    def _finish(self) -> Answer:
        self.done = True
        self._state = "done"
        body = _decode(bytes(self._body), self._headers.get("content-encoding", ""))
        if self._buf:
            self._keep_alive = False  # more than one answer: never reuse this connection
        return Answer(self._status, self._reason, self._headers, body, self._keep_alive)


def _status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not _is_number(code):
        raise HttpProtocolError(f"bad status line {line[:60]!r}")
    return version, int(code), reason


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _decode(body: bytes, encoding: str) -> bytes:
    coding = encoding.strip().lower()
    if coding in ("", "identity") or not body:
        return body
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, coding)
    if coding == "deflate":
        try:
            return _inflate(body, zlib.MAX_WBITS, coding)
        except HttpProtocolError:
            return _inflate(body, -zlib.MAX_WBITS, coding)  # raw deflate, as some servers send
    raise HttpProtocolError(f"unsupported Content-Encoding {encoding[:40]!r}")


def _inflate(body: bytes, wbits: int, coding: str) -> bytes:
    out = bytearray()
    rest = body
    while True:  # a gzip body may be several members (RFC 1952 2.2), read them all
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, MAX_BODY + 1 - len(out))
        except zlib.error as exc:
            raise HttpProtocolError(f"bad {coding} body: {exc}") from None
        if len(out) > MAX_BODY:
            raise HttpProtocolError(f"answer body inflates past {MAX_BODY} bytes")
        if not inflater.eof:
            raise HttpProtocolError(f"truncated {coding} body")
        rest = inflater.unused_data
        if not rest or wbits != 16 + zlib.MAX_WBITS:
            return bytes(out)
