"""``muxd upstream preflight -c FILE``: try the Onlinesim calls a config will make, before going
live, and say which config key to change for each one that does not work.

API v2 (muxd calls Onlinesim): every call the config uses is made twice in test mode, which
Onlinesim does not execute: once with ``test=test2`` by a plain HTTP request, to show what came
back (Onlinesim echoes the request), and once with ``test=test1`` through muxd's own client, to
show whether muxd accepts the answer. Redirects are not followed (a 3xx is a wrong URL). The
calls: checkWork (authentication; the heartbeat with ``numbers_mode = "incremental"``),
sendNumbersOnline or addNumber/removeNumber, addMessages (and addMessage when addMessages is
refused: muxd falls back to it by itself). Nothing is sold and nothing is stored.

API v1 (Onlinesim calls muxd): the running partner server is asked GET_SERVICES through its
public address (``v1.public_url``, else ``v1.listen``), on ``/`` and on the per-method path, and
once with a wrong key (it must refuse); GET_NUMBER is never called (it would reserve a number).
Then it prints what partner support must be told: the URLs per action, where the key goes, and
where muxd sends PUSH_SMS.

Exit status: 0 when every verdict is OK, WARN or INFO; 1 when one is FAIL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec

from muxd import __version__
from muxd.config import Config, UpstreamConfig, V1Config, parse_listen
from muxd.errors import UpstreamError
from muxd.numbering import calling_code
from muxd.upstream.v2 import TEST_MODE_REASON, MessageItem, NumberEntry, V2Client

# Each preflight request gives up after this long (a live endpoint answers in well under it).
PREFLIGHT_TIMEOUT: Final = 15.0
# A number that is only ever sent in test mode, when the command line names none.
SAMPLE_NUMBER: Final = "+79000000000"
# How much of a body the table shows.
SHOWN: Final = 120
USER_AGENT: Final = f"muxd/{__version__} preflight"
WRONG_KEY: Final = "muxd-preflight-wrong-key"

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "INFO"
V1_PATHS: Final = (
    ("GET_SERVICES", "/getServices", "/getServicesRent"),
    ("GET_NUMBER", "/getNumber", "/getNumberRent"),
    ("FINISH_ACTIVATION", "/finishActivation", "/finishActivationRent"),
)


@dataclass(frozen=True, slots=True)
class Row:
    call: str
    sent: str
    got: str
    verdict: str  # OK | WARN | FAIL | INFO
    key: str = ""  # the config key to set, when there is one


def _short(text: str, limit: int = SHOWN) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Raw:
    status: int | None  # None: no answer at all
    text: str
    location: str | None = None
    encoding: str | None = None

    def shown(self) -> str:
        if self.status is None:
            return self.text
        where = f" -> {self.location}" if self.location else ""
        return f"{self.status}{where} {_short(self.text)}".strip()


async def raw_call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Raw:
    """One request, redirects not followed; the answer as it came."""
    data = msgspec.json.encode(body) if body is not None else None
    try:
        async with http.request(
            method,
            url,
            data=data,
            headers=headers,
            params=params,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT),
        ) as resp:
            text = await resp.text(errors="replace")
            return Raw(
                resp.status,
                text,
                resp.headers.get("Location"),
                resp.headers.get("Content-Encoding"),
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Raw(None, f"no answer: {type(exc).__name__}: {exc}")


def _response_value(text: str) -> object:
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return data.get("response") if isinstance(data, dict) else None


class V2Preflight:
    def __init__(self, http: aiohttp.ClientSession, cfg: UpstreamConfig, number: str) -> None:
        self.http = http
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        self.number = number
        self.client = V2Client(
            http,
            cfg.url,
            cfg.api_key,
            test="test1",
            timeout=PREFLIGHT_TIMEOUT,
            check_work_method=cfg.check_work_method,
        )
        self.headers = {
            "Authorization": f"Bearer {cfg.api_key}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip",
        }
        self.rows: list[Row] = []
        self.string_one = False  # some answer had "response": "1"
        self.gzipped = False  # some answer came gzipped

    def entry(self) -> NumberEntry:
        return NumberEntry(number=self.number, country_id=calling_code(self.number) or 7)

    async def _raw(
        self,
        method: str,
        endpoint: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Raw:
        url = f"{self.base}/api/resellers{'/' + endpoint if endpoint else ''}"
        if body is not None:
            body = {**body, "test": "test2"}
        else:
            params = {**(params or {}), "test": "test2"}
        raw = await raw_call(self.http, method, url, headers=self.headers, body=body, params=params)
        if raw.status == 200 and _response_value(raw.text) == "1":
            self.string_one = True
        if raw.encoding and "gzip" in raw.encoding.lower():
            self.gzipped = True
        return raw

    async def step(
        self,
        call: str,
        method: str,
        endpoint: str,
        via_client: Callable[[], Awaitable[object]],
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        key: str = "",
    ) -> tuple[Raw, str]:
        """Show the call (test2), judge it by muxd's client (test1); add the row."""
        raw = await self._raw(method, endpoint, body, params)
        sent = f"{method} /api/resellers{'/' + endpoint if endpoint else ''}"
        if params:
            sent += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        if body is not None:
            sent += " " + _short(msgspec.json.encode(body).decode(), 80)
        try:
            await via_client()
            verdict, got = OK, raw.shown()
        except UpstreamError as exc:
            if exc.body == TEST_MODE_REASON:
                # Accepted: in test mode muxd's client keeps SMS pending (nothing is stored).
                verdict, got = OK, raw.shown()
            else:
                verdict, got = FAIL, f"{raw.shown()} | muxd: {_short(str(exc), 80)}"
        if raw.status is not None and 300 <= raw.status < 400:
            verdict, key = FAIL, "upstream.url (use the address it redirects to)"
        elif raw.status in (401, 403):
            verdict, key = FAIL, "upstream.api_key (and partner access for this account)"
        elif raw.status is None:
            verdict, key = FAIL, "upstream.url"
        elif raw.status == 400 and "NO_NUMBER" in raw.text:
            # Authenticated and understood; test mode listed nothing, so the number is unknown.
            verdict, key = WARN, "--number (a listed number: test mode listed nothing)"
        self.rows.append(Row(call, sent, got, verdict, key if verdict != OK else ""))
        return raw, verdict

    async def run(self) -> list[Row]:
        cfg = self.cfg
        method = cfg.check_work_method.upper()
        endpoint = "checkWork" if method == "POST" else ""
        raw, verdict = await self.step(
            "checkWork (authentication)",
            method,
            endpoint,
            self.client.check_work,
        )
        if raw.status is None or raw.status in (401, 403) or 300 <= raw.status < 400:
            self.rows.append(Row("(the other calls)", "-", "skipped", INFO))
            return self.rows
        if verdict == FAIL and raw.status in (404, 405):
            other = "GET" if method == "POST" else "POST"
            self.rows[-1] = Row(
                self.rows[-1].call,
                self.rows[-1].sent,
                self.rows[-1].got,
                FAIL if cfg.numbers_mode == "incremental" else WARN,
                f'upstream.check_work_method = "{other}"',
            )
        entry = self.entry()
        if cfg.numbers_mode == "list":
            await self.step(
                "sendNumbersOnline",
                "POST",
                "sendNumbersOnline",
                lambda: self.client.send_numbers_online([entry]),
                body={"numbers": [msgspec.to_builtins(entry)]},
            )
        else:
            body = msgspec.to_builtins(entry)
            body["rent"] = entry.rent
            await self.step(
                "addNumber",
                "POST",
                "addNumber",
                lambda: self.client.add_number(entry),
                body=body,
            )
            await self.step(
                "removeNumber",
                "DELETE",
                "removeNumber",
                lambda: self.client.remove_number(entry.number),
                params={"number": entry.number},
            )
        item = MessageItem(
            date="1700000000", number=entry.number, sender="muxd", message="preflight"
        )
        raw, verdict = await self.step(
            "addMessages",
            "POST",
            "addMessages",
            lambda: self.client.add_messages([item]),
            body={"messages": [msgspec.to_builtins(item)]},
        )
        if verdict == FAIL and raw.status in (404, 405):
            last = self.rows[-1]
            self.rows[-1] = Row(last.call, last.sent, last.got, WARN, "")
            await self.step(
                "addMessage (muxd's fallback)",
                "POST",
                "addMessage",
                lambda: self.client.add_message(item),
                body=msgspec.to_builtins(item),
            )
        self._findings()
        return self.rows

    def _findings(self) -> None:
        cfg = self.cfg
        if self.string_one:
            self.rows.append(Row("response type", "-", '"response": "1" (a string)', INFO))
        zipped = "gzip" if self.gzipped else "plain"
        self.rows.append(
            Row("gzip", "plain JSON bodies, Accept-Encoding: gzip", f"answers {zipped}", INFO)
        )
        if cfg.test is not None:
            self.rows.append(
                Row(
                    "test mode",
                    f"upstream.test = {cfg.test!r}",
                    "Onlinesim stores nothing in test mode",
                    WARN,
                    "upstream.test (remove it before going live)",
                )
            )


def public_base(v1: V1Config) -> str:
    if v1.public_url:
        return v1.public_url.rstrip("/")
    host, port = parse_listen(v1.listen)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    scheme = "https" if v1.tls_cert else "http"  # muxd's own TLS (v1.tls_cert)
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


async def preflight_v1(http: aiohttp.ClientSession, cfg: Config) -> list[Row]:
    v1 = cfg.v1
    base = public_base(v1)
    key_name = "v1.public_url" if v1.public_url else "v1.listen (and v1.public_url)"
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    rows: list[Row] = []
    body = {"action": "GET_SERVICES", "key": cfg.upstream.api_key}
    for path in ("/", "/getServices"):
        raw = await raw_call(http, "POST", base + path, headers=headers, body=body)
        try:
            answer = msgspec.json.decode(raw.text) if raw.status == 200 else None
        except msgspec.DecodeError:
            answer = None
        good = isinstance(answer, dict) and answer.get("status") == "SUCCESS"
        verdict = OK if good else FAIL
        hint = "" if good else key_name
        if raw.status is None:
            hint = f"{key_name}; is muxd running with this config (muxd run -c FILE)?"
        shown = raw.shown().replace(cfg.upstream.api_key, "***")
        rows.append(Row(f"GET_SERVICES via {path}", f"POST {base}{path}", shown, verdict, hint))
    wrong = {"action": "GET_SERVICES", "key": WRONG_KEY}
    raw = await raw_call(http, "POST", base + "/", headers=headers, body=wrong)
    refused = raw.status == 401
    rows.append(
        Row(
            "wrong key refused",
            f"POST {base}/ (a wrong key)",
            raw.shown(),
            OK if refused else FAIL,
            "" if refused else "upstream.api_key (the partner server must check it)",
        )
    )
    if not v1.public_url:
        rows.append(
            Row(
                "public address",
                "-",
                f"v1.public_url not set: checked {base} only",
                WARN,
                "v1.public_url (the address Onlinesim reaches)",
            )
        )
    return rows


def support_text(cfg: Config) -> str:
    """What partner support must be told for API v1."""
    v1 = cfg.v1
    base = public_base(v1)
    lines = [
        "Tell Onlinesim partner support (API v1):",
        f'  One URL for every action (the action is the body\'s "action"): {base}/',
        "  or one URL per method (POST, JSON UTF-8):",
    ]
    for action, path, rent_path in V1_PATHS:
        lines.append(f"    {action:<18} {base}{path}")
        if v1.rent:
            lines.append(f"    {action + ' (RENT)':<18} {base}{rent_path}")
    bearer = "required too" if v1.require_bearer else "accepted, not required"
    lines += [
        '  Key: your Onlinesim API key in the JSON body field "key"; an'
        f' "Authorization: Bearer <key>" header is {bearer} (v1.require_bearer); an'
        ' "apikey" query parameter, when present, must match too.',
        f'  No number to offer: {{"status": "{v1.no_numbers_status}"}} (v1.no_numbers_status).',
        f"  muxd sends PUSH_SMS to: {v1.push_sms_url or '(v1.push_sms_url not set)'}",
    ]
    if v1.rent:
        lines.append(f"  and rent PUSH_SMS to: {v1.push_sms_rent_url or v1.push_sms_url}")
    gzip = "gzip-compressed (Content-Encoding: gzip)" if v1.gzip_push else "plain JSON"
    lines += [
        f"  PUSH_SMS bodies are {gzip} (v1.gzip_push); smsId is "
        + ("unique per SMS" if v1.sms_id == "sms" else "the activationId")
        + " (v1.sms_id).",
        "  Operations end only with FINISH_ACTIVATION"
        + (" (muxd also frees a number 15 min + v1.reservation_grace after GET_NUMBER)."
           if v1.reservation_expiry else " (v1.reservation_expiry is off)."),
    ]  # fmt: skip
    return "\n".join(lines)


def render(rows: list[Row]) -> str:
    heads = Row("CALL", "SENT", "GOT", "VERDICT", "SET")
    table = [heads, *rows]
    cols = list(zip(*((r.call, r.sent, r.got, r.verdict, r.key) for r in table), strict=True))
    widths = [min(max(len(c) for c in col), 60) for col in cols[:-1]]
    out = []
    for r in table:
        cells = (r.call, r.sent, r.got, r.verdict)
        parts = [_short(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)]
        out.append("  ".join([*parts, r.key]).rstrip())
    return "\n".join(out)


async def preflight(cfg: Config, *, number: str = SAMPLE_NUMBER) -> tuple[list[Row], str]:
    """The rows of the table and, for v1, the text for partner support."""
    async with aiohttp.ClientSession() as http:
        if cfg.upstream.api == "v1":
            return await preflight_v1(http, cfg), support_text(cfg)
        return await V2Preflight(http, cfg.upstream, number).run(), ""


def run(cfg: Config, *, number: str = SAMPLE_NUMBER) -> tuple[int, str]:
    """(exit status, what to print)."""
    rows, extra = asyncio.run(preflight(cfg, number=number))
    text = render(rows) + (f"\n\n{extra}" if extra else "")
    failed = any(r.verdict == FAIL for r in rows)
    return (1 if failed else 0), text
