"""A stand-in for Onlinesim's side of API v1: it calls muxd's partner
server and receives PUSH_SMS, checking muxd the way partner support's tests would.

:class:`V1Driver` is both halves:

- a PUSH_SMS receiver (aiohttp) on ``/v1/PUSH_SMS`` (:attr:`push_url`) and ``/pushSmsRent``
  (:attr:`rent_url`). It checks every push: POST, JSON (gzip accepted), a User-Agent, the
  exact field types of PUSH_SMS (``smsId`` integer ≥ 1, ``phone`` a string of digits,
  ``phoneFrom`` and ``text`` strings, ``action`` ``PUSH_SMS``, ``key`` the API key, a Bearer
  header if any with the same key), ``service: "rent"`` exactly on the rent URL, the number
  in an operation this driver opened, and no ``smsId`` sent again after a SUCCESS. It answers
  ``{"status": "SUCCESS"}``, or the next scripted answer (:meth:`script`): a code
  (``NO_OPERATION``, ``BAD_SERVICE``, ``IGNORED``, ``SERVICE_BAN``: 200 with that status,
  ``NO_OPERATION`` as 404 like the 2023 spec), an HTTP status (503) or ``(status, body)``.
- a client of muxd's server: :meth:`get_services`, :meth:`get_number` (with exception masks),
  :meth:`finish` (repeats allowed), :meth:`poll_services` (every 2 minutes). It checks
  the answers: in time (10 s), JSON ``status``, the GET_SERVICES shape (``any`` = sum over
  operators), numbers as integers outside the masks, activation ids integers ≥ 1.

:attr:`dialects` (:data:`muxd_sim.onlinesim_dialects.V1_DIALECTS`) switch the receiver to the
other readings of the docs: other 200 bodies for a stored push, gzipped bodies refused,
``phone`` an integer, rent ``service`` upper case. A push counts as stored when its answer is
labelled ``SUCCESS`` (whatever the dialect's body for it).

Every check lands in :attr:`checks` as a :class:`Check` (``report()`` prints them); nothing
raises, so a test asserts ``driver.failed() == []`` and reads the report when it is not.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import hdrs, web

from muxd_sim.onlinesim_dialects import (
    V1_DIALECTS,
    parse_dialects,
    v1_body_refusal,
    v1_field_problem,
    v1_stored_answer,
)

PUSH_PATH: Final = "/v1/PUSH_SMS"
RENT_PATH: Final = "/pushSmsRent"
# Onlinesim wants every v1 call answered within 10 s.
ANSWER_DEADLINE: Final = 10.0
# Onlinesim polls GET_SERVICES every 2 minutes.
POLL_INTERVAL: Final = 120.0
# Bounds a test's wait for pushes (tests pass their own, shorter ones).
WAIT_TIMEOUT: Final = 30.0
USER_AGENT: Final = "onlinesim-v1-stand-in"
PUSH_FIELDS: Final = frozenset({"smsId", "phoneFrom", "phone", "text", "action", "key"})
# How a scripted code is answered: HTTP status (the 2023 spec maps NO_OPERATION to 404).
CODE_STATUS: Final = {"NO_OPERATION": 404}

Answer = str | int | tuple[int, str]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}{detail}"


@dataclass(frozen=True, slots=True)
class Push:
    """One PUSH_SMS as received, with the answer it got."""

    body: dict[str, Any]
    rent_url: bool
    gzip: bool
    user_agent: str | None
    answer: str  # "SUCCESS", a code, or "HTTP 503"

    @property
    def sms_id(self) -> Any:
        return self.body.get("smsId")

    @property
    def text(self) -> Any:
        return self.body.get("text")

    @property
    def phone(self) -> Any:
        return self.body.get("phone")


@dataclass
class V1Driver:
    api_key: str
    base_url: str = ""  # muxd's v1 server, e.g. http://127.0.0.1:8090
    use_paths: bool = False  # per-method paths (/getNumber ...) instead of the one URL
    gzip_requests: bool = True
    bearer: bool = True
    dialects: frozenset[str] = frozenset()
    checks: list[Check] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    services: dict[str, Any] | None = None  # last GET_SERVICES answer
    open_numbers: dict[str, int] = field(default_factory=dict)  # phone digits -> activationId
    ever_opened: set[str] = field(default_factory=set)
    _script: list[Answer] = field(default_factory=list)
    _succeeded: set[Any] = field(default_factory=set)
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    port: int = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.dialects = parse_dialects(self.dialects, V1_DIALECTS)
        self._changed = asyncio.Condition()
        # gzip is undone here, to see (and check) that the body really was gzip
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_post(PUSH_PATH, self._on_push)
        app.router.add_post(RENT_PATH, self._on_push)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> V1Driver:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def push_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PUSH_PATH}"

    @property
    def rent_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RENT_PATH}"

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def report(self) -> str:
        return "\n".join(str(c) for c in self.checks)

    def script(self, *answers: Answer) -> None:
        """Answer the next pushes with these (then SUCCESS again)."""
        self._script.extend(answers)

    async def wait_pushes(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[Push]:
        """Until ``count`` pushes were received (any answer); bounded by ``timeout``."""
        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.pushes) >= count)
        return list(self.pushes)

    # -- PUSH_SMS receiver --------------------------------------------------------------------

    async def _on_push(self, request: web.Request) -> web.Response:
        rent_url = request.path == RENT_PATH
        raw = await request.read()
        zipped = request.headers.get(hdrs.CONTENT_ENCODING, "").lower() == "gzip"
        ua = request.headers.get(hdrs.USER_AGENT)
        self.check("push: User-Agent present", bool(ua), repr(ua))
        ctype = request.headers.get(hdrs.CONTENT_TYPE, "")
        self.check("push: JSON UTF-8", "application/json" in ctype and "utf-8" in ctype, ctype)
        body: dict[str, Any] = {}
        try:
            decoded = msgspec.json.decode(gzip.decompress(raw) if zipped else raw)
            if isinstance(decoded, dict):
                body = decoded
        except (OSError, msgspec.DecodeError) as exc:
            self.check("push: body decodes", False, str(exc))
        refusal = v1_body_refusal(self.dialects, zipped)
        if refusal is not None:  # this dialect cannot read a gzipped body: nothing stored
            status, text = refusal
            push = Push(body, rent_url, zipped, ua, "GZIP REFUSED")
            return await self._record(push, status, text)
        valid = self._check_push(request, body, rent_url)
        answer = self._script.pop(0) if self._script else "SUCCESS"
        if not valid and answer == "SUCCESS":
            answer = (400, '{"status": "ERROR"}')
        phone = str(body.get("phone"))
        if phone not in self.ever_opened:
            self.check("push: number was handed out by GET_NUMBER", False, phone)
        if answer == "SUCCESS" and phone not in self.open_numbers:
            answer = "NO_OPERATION"  # what Onlinesim answers once the operation is over
        problem = v1_field_problem(self.dialects, body)
        if problem is not None and answer == "SUCCESS":
            answer = (400, msgspec.json.encode({"status": "ERROR", "error": problem}).decode())
        status, text, label = self._answer(answer)
        if label == "SUCCESS":
            self.check(
                "push: never again after SUCCESS",
                body.get("smsId") not in self._succeeded,
                f"smsId {body.get('smsId')}",
            )
            self._succeeded.add(body.get("smsId"))
            text = v1_stored_answer(self.dialects)
        return await self._record(Push(body, rent_url, zipped, ua, label), status, text)

    async def _record(self, push: Push, status: int, text: str) -> web.Response:
        assert self._changed is not None
        async with self._changed:
            self.pushes.append(push)
            self._changed.notify_all()
        return web.Response(status=status, text=text, content_type="application/json")

    def stored(self) -> list[Push]:
        """The pushes this stand-in stored (answered as delivered), in order."""
        return [p for p in self.pushes if p.answer == "SUCCESS"]

    @staticmethod
    def _answer(answer: Answer) -> tuple[int, str, str]:
        if isinstance(answer, tuple):
            return answer[0], answer[1], f"HTTP {answer[0]}"
        if isinstance(answer, int):
            return answer, '{"status": "ERROR"}', f"HTTP {answer}"
        return (
            CODE_STATUS.get(answer, 200),
            msgspec.json.encode({"status": answer}).decode(),
            answer,
        )

    def _check_push(self, request: web.Request, body: dict[str, Any], rent_url: bool) -> bool:
        ok = True
        sms_id = body.get("smsId")
        ok &= self.check(
            "push: smsId integer >= 1",
            isinstance(sms_id, int) and not isinstance(sms_id, bool) and sms_id >= 1,
            repr(sms_id),
        )
        phone = body.get("phone")
        if "phone-integer" in self.dialects:
            typed = isinstance(phone, int) and not isinstance(phone, bool) and phone > 0
            ok &= self.check("push: phone integer", typed, repr(phone))
        else:
            typed = isinstance(phone, str) and phone.isdigit()
            ok &= self.check("push: phone digit string", typed, repr(phone))
        for name in ("phoneFrom", "text"):
            ok &= self.check(f"push: {name} string", isinstance(body.get(name), str))
        ok &= self.check("push: action", body.get("action") == "PUSH_SMS", repr(body.get("action")))
        key = body.get("key")
        ok &= self.check(
            "push: key",
            isinstance(key, str) and hmac.compare_digest(key.encode(), self.api_key.encode()),
        )
        bearer = request.headers.get(hdrs.AUTHORIZATION)
        if bearer is not None:
            ok &= self.check("push: Bearer key", bearer == f"Bearer {self.api_key}")
        if rent_url:
            rent = "RENT" if "rent-upper" in self.dialects else "rent"
            ok &= self.check(f"push: service {rent}", body.get("service") == rent)
        extra = set(body) - PUSH_FIELDS - ({"service"} if rent_url else set())
        ok &= self.check("push: no unknown fields", not extra, ", ".join(sorted(extra)))
        return ok

    # -- client of muxd's server --------------------------------------------------------------

    async def call(
        self, action: str, body: dict[str, Any], *, path: str = "/", key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST one v1 request; (HTTP status, JSON answer or {})."""
        assert self._http is not None, "start() first"
        key = self.api_key if key is None else key
        payload = {"action": action, **body, "key": key}
        data = msgspec.json.encode(payload)
        headers = {
            hdrs.CONTENT_TYPE: "application/json; charset=utf-8",
            hdrs.USER_AGENT: USER_AGENT,
            hdrs.ACCEPT_ENCODING: "gzip",
        }
        if self.bearer:
            headers[hdrs.AUTHORIZATION] = f"Bearer {key}"
        if self.gzip_requests:
            data = gzip.compress(data)
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        url = self.base_url.rstrip("/") + (path if self.use_paths else "/")
        started = time.perf_counter()
        async with self._http.post(url, data=data, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
            encoding = resp.headers.get(hdrs.CONTENT_ENCODING, "")
        elapsed = time.perf_counter() - started
        self.check(f"{action}: answered within 10 s", elapsed < ANSWER_DEADLINE, f"{elapsed:.3f} s")
        self.check(f"{action}: gzip answer", encoding == "gzip", encoding or "identity")
        try:
            answer = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            answer = None
        self.check(f"{action}: JSON object answer", isinstance(answer, dict), raw[:80].decode())
        answer = answer if isinstance(answer, dict) else {}
        if key != self.api_key:
            self.check(
                f"{action}: wrong key refused",
                status == 401 and answer.get("status") == "ERROR",
                f"HTTP {status} {answer}",
            )
        return status, answer

    async def get_services(self, *, rent: bool = False, key: str | None = None) -> dict[str, Any]:
        path = "/getServicesRent" if rent else "/getServices"
        _status, answer = await self.call("GET_SERVICES", {}, path=path, key=key)
        if key is not None and key != self.api_key:
            return answer
        if not self.check("GET_SERVICES: SUCCESS", answer.get("status") == "SUCCESS", repr(answer)):
            return answer
        self._check_country_list(answer.get("countryList"))
        self.services = answer
        return answer

    def _check_country_list(self, country_list: Any) -> None:
        if not self.check("GET_SERVICES: countryList array", isinstance(country_list, list)):
            return
        for entry in country_list:
            ops = entry.get("operatorMap") if isinstance(entry, dict) else None
            name = entry.get("country") if isinstance(entry, dict) else None
            ok = (
                isinstance(name, str) and isinstance(ops, dict) and isinstance(ops.get("any"), dict)
            )
            if not self.check("GET_SERVICES: country + operatorMap.any", ok, repr(entry)[:120]):
                continue
            assert isinstance(ops, dict)
            keys = set().union(*(set(v) for v in ops.values() if isinstance(v, dict)))
            for key in keys:
                counts = [v.get(key, 0) for op, v in ops.items() if op != "any"]
                ints = all(isinstance(c, int) and c >= 0 for c in [*counts, ops["any"].get(key)])
                self.check(f"GET_SERVICES: {name} counts are integers", ints)
                if ints:
                    self.check(
                        f"GET_SERVICES: {name} any = sum ({key})",
                        ops["any"].get(key) == sum(counts),
                        f"{ops['any'].get(key)} vs {sum(counts)}",
                    )

    async def get_number(
        self,
        country: str,
        operator: str = "any",
        service: str = "vk",
        sum: float = 10,  # the protocol's field name
        exception_set: list[int | str] | None = None,
        *,
        rent: bool = False,
        key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"country": country, "operator": operator, "service": service}
        body["sum"] = sum
        if exception_set is not None:
            body["exceptionPhoneSet"] = exception_set
        path = "/getNumberRent" if rent else "/getNumber"
        _status, answer = await self.call("GET_NUMBER", body, path=path, key=key)
        if key is not None and key != self.api_key:
            return answer
        if answer.get("status") != "SUCCESS":
            self.check(
                "GET_NUMBER: no-number answer", answer.get("status") in ("NO_NUMBERS", "ERROR")
            )
            return answer
        number, aid = answer.get("number"), answer.get("activationId")
        typed = isinstance(number, int) and not isinstance(number, bool)
        self.check("GET_NUMBER: number is an integer", typed, repr(number))
        self.check(
            "GET_NUMBER: activationId integer >= 1",
            isinstance(aid, int) and not isinstance(aid, bool) and aid >= 1,
            repr(aid),
        )
        masks = [str(m).lstrip("+") for m in exception_set or []]
        self.check(
            "GET_NUMBER: exception masks honoured",
            not any(str(number).startswith(m) for m in masks),
            f"{number} vs {masks}",
        )
        if typed and isinstance(aid, int):
            self.check(
                "GET_NUMBER: number not already in an open operation",
                str(number) not in self.open_numbers,
                str(number),
            )
            self.open_numbers[str(number)] = aid
            self.ever_opened.add(str(number))
        return answer

    async def finish(
        self,
        activation_id: int,
        status: int,
        sum: float | None = None,  # the protocol's field name
        *,
        rent: bool = False,
        key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"activationId": activation_id, "status": status}
        if sum is not None:
            body["sum"] = sum
        if rent:
            body["service"] = "rent"
        path = "/finishActivationRent" if rent else "/finishActivation"
        _status, answer = await self.call("FINISH_ACTIVATION", body, path=path, key=key)
        if key is None or key == self.api_key:
            self.check(
                "FINISH_ACTIVATION: SUCCESS", answer.get("status") == "SUCCESS", repr(answer)
            )
            for number, aid in list(self.open_numbers.items()):
                if aid == activation_id:
                    del self.open_numbers[number]
        return answer

    async def poll_services(self, interval: float = POLL_INTERVAL) -> None:
        """GET_SERVICES every ``interval`` seconds until cancelled."""
        while True:
            await self.get_services()
            await asyncio.sleep(interval)
