"""PUSH_SMS: forwards each SMS received during an open operation to Onlinesim.

In v1 mode this consumes the journal's pending messages instead of the v2 shipper. For each
message, in one journal operation (:func:`muxd.upstream.v1.operations.assign_pending`): the
operation open on its number when it was received gets a push row (its ``sms_id`` is the
``smsId``, identical on every retry); no operation: the message is kept as ``no_operation``
(counted, never pushed); an operation whose service has a local filter rule the SMS does not
match: ``filtered``. Rent operations take every SMS (the partner's filters do not apply to
rent) and go to the rent URL with ``service: "rent"``.

Answers (Onlinesim's docs leave the retries open; the code is read from the JSON body's
``status``, ``error`` or ``response``, or from a bare-text body):

=================================  ===============================================
HTTP 200 + ``SUCCESS``             delivered; never sent again
``NO_OPERATION`` / ``NO_OP``       recorded (push and message ``no_operation``), not retried
``BAD_SERVICE``                    recorded (``rejected``), not retried
``IGNORED`` / ``SERVICE_BAN``      recorded (``rejected``), not retried: Onlinesim's verdict
                                   on this SMS (``retry_verdicts=True``: retried instead)
404 with an empty or JSON body     ``NO_OPERATION`` (the 2023 spec's mapping); a 404 with an
                                   HTML body is a wrong URL or a proxy: retried
anything else (5xx, 429, 200 +     the identical request again after :data:`PUSH_RETRY`
``ERROR``, timeouts, resets)
=================================  ===============================================

The table is ``v1.push_success = "status"``; the verdicts, the default ``"http200"`` rule (any
other 200 answer is delivered), gzip and its fallback live in :mod:`muxd.upstream.v1.push_policy`.

Pushes on the same number go out in order: a number's later SMS waits while an earlier one is
being retried. Different numbers are pushed concurrently. Failures go through one
:class:`~muxd.upstream.backoff.RetryLoop`: the spec's 10 s for the first minute of failures,
then doubling, jittered, up to 5 minutes, never sooner than a ``Retry-After``; past that first
minute one push at a time probes the upstream, and every number resumes when one is answered.
One log line when pushing starts failing, one when it recovers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import aiohttp
import msgspec

from muxd import __version__
from muxd.config import FilterRule
from muxd.errors import JournalError
from muxd.log import mask_number
from muxd.store import Journal
from muxd.upstream.backoff import Policy, RetryLoop, parse_retry_after
from muxd.upstream.v1.observer import V1Observer
from muxd.upstream.v1.operations import (
    PushRow,
    PushState,
    assign_pending,
    mark_push_attempt,
    note_push_failure,
    pending_pushes,
    settle_push,
)
from muxd.upstream.v1.push_policy import PushPolicy

LOGGER = logging.getLogger(__name__)

# Onlinesim's rule: a push not answered 200/SUCCESS is sent again after 10 s.
PUSH_RETRY = 10.0
# The first retries keep the spec's 10 s; an upstream still failing after a minute is probed
# less often, up to every 5 minutes (an hour-long outage costs ~25 pushes, not 360 per SMS).
PUSH_STEADY_RETRIES = 6
PUSH_RETRY_CAP = 300.0
PUSH_POLICY = Policy(first=PUSH_RETRY, cap=PUSH_RETRY_CAP, steady=PUSH_STEADY_RETRIES, floor=1.0)
# Onlinesim publishes no timeout for partner -> Onlinesim calls; a push hung longer than
# the retry interval is treated as failed, so it is retried on the spec's rhythm.
PUSH_TIMEOUT = 10.0
# Numbers pushed at once (each number's SMS go out one after another).
PUSH_CONCURRENCY = 16
# Messages classified per journal operation.
ASSIGN_BATCH = 500
# Even without a new-message signal, look at the journal this often.
IDLE_POLL = 30.0
# After a journal failure, try again this much later (intake is stopped meanwhile).
JOURNAL_RETRY = 5.0
USER_AGENT = f"muxd/{__version__}"

NO_OPERATION_CODES = frozenset({"NO_OPERATION", "NO_OP"})
FINAL_CODES = frozenset({"BAD_SERVICE"})
VERDICT_CODES = frozenset({"IGNORED", "SERVICE_BAN"})
OTHER_CODES = frozenset({"SUCCESS", "ERROR", "TOO_MANY_ATTEMPTS"})
KNOWN_CODES = NO_OPERATION_CODES | FINAL_CODES | VERDICT_CODES | OTHER_CODES

Sleep = Callable[[float], Awaitable[None]]
Verdict = Literal["delivered", "no_operation", "rejected", "retry"]
_ENCODER = msgspec.json.Encoder()


def _code(body: str) -> str | None:
    """The answer code of a reply body: a known code from ``status``, ``error`` or
    ``response``, else ``status``; a bare-text body that is one word is the code itself."""
    text = body.strip()
    if not text:
        return None
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError:
        word = text.upper()
        return word if re.fullmatch(r"[A-Z_]+", word) else None
    if not isinstance(data, dict):
        return None
    values = [str(data[k]).strip().upper() for k in ("status", "error", "response") if k in data]
    for value in values:
        if value in KNOWN_CODES - {"ERROR"}:
            return value
    return values[0] if values else None


def classify(status: int, body: str, *, retry_verdicts: bool = False) -> tuple[Verdict, str]:
    """(what to do with the push, the result recorded) for one HTTP answer."""
    code = _code(body)
    if status == 200 and code == "SUCCESS":
        return "delivered", "SUCCESS"
    if code in NO_OPERATION_CODES:
        return "no_operation", code
    if code in FINAL_CODES:
        return "rejected", code
    if code in VERDICT_CODES:
        return ("retry" if retry_verdicts else "rejected"), code
    looks_json = body.strip()[:1] in ("", "{", "[")
    if status == 404 and looks_json:
        return "no_operation", "HTTP 404"
    return "retry", f"HTTP {status} {code or body.strip()[:100]}".strip()


def compile_filters(rules: Mapping[str, FilterRule]) -> Callable[[str, str, str], bool]:
    """matches(service, sender, text): True when there is no rule for the service (or it
    lists no pattern), or the sender or the text matches one of its patterns."""
    compiled = {
        service: (
            [re.compile(p, re.IGNORECASE) for p in rule.senders],
            [re.compile(p, re.IGNORECASE) for p in rule.text],
        )
        for service, rule in rules.items()
        if rule.senders or rule.text
    }

    def matches(service: str, sender: str, text: str) -> bool:
        rule = compiled.get(service)
        if rule is None:
            return True
        senders, texts = rule
        return any(r.search(sender) for r in senders) or any(r.search(text) for r in texts)

    return matches


class Pusher:
    def __init__(
        self,
        journal: Journal,
        http: aiohttp.ClientSession,
        *,
        api_key: str,
        url: str,
        rent_url: str,
        filters: Mapping[str, FilterRule],
        gzip_body: bool,
        clock: Callable[[], float],
        sleep: Sleep,
        observer: V1Observer,
        sms_id: Literal["sms", "activation"] = "sms",
        retry_verdicts: bool = False,
        policy: PushPolicy | None = None,
        timer: Callable[[], float] | None = None,
    ) -> None:
        """``clock``: wall time, for what is stored (when a push was settled) and for matching
        SMS to operations; ``timer``: the monotonic clock every retry and wait runs on (a
        wall-clock step moves no retry), ``clock`` itself when not given (tests' one clock)."""
        # The body's dialect, gzip and the verdict on each answer (muxd.upstream.v1.push_policy).
        self._policy = policy or PushPolicy(gzip_body=gzip_body, retry_verdicts=retry_verdicts)
        self._journal = journal
        self._http = http
        self._key = api_key
        self._url = url
        self._rent_url = rent_url or url
        self._matches = compile_filters(filters)
        self._gzip = gzip_body
        self._clock = clock
        self._timer = timer or clock
        self._sleep = sleep
        self._observer = observer
        self._sms_id = sms_id
        self._retry_verdicts = retry_verdicts
        self._queue: dict[int, PushRow] = {}  # sms_id -> push not settled
        self._due: dict[int, float] = {}  # sms_id -> earliest next attempt
        # Pushing as a whole: ok, or failing (then one push at a time probes the upstream).
        self.loop = RetryLoop(
            "pusher", PUSH_POLICY, clock=self._timer, logger=LOGGER, what="v1 PUSH_SMS"
        )
        self._senders: dict[str, asyncio.Task[None]] = {}  # number -> its sender
        self._wake = asyncio.Event()  # a sender finished
        self._limit = asyncio.Semaphore(PUSH_CONCURRENCY)
        self.last_error: str | None = None
        self.delivered = 0
        self._journal_failing: set[str] = set()  # what fails on a journal error now
        # sms_id -> Onlinesim's final answer, not recorded yet (the journal refused it).
        self._unrecorded: dict[int, tuple[Verdict, str]] = {}

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def sending(self) -> int:
        """Numbers whose pushes are on the wire now."""
        return len(self._senders)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._load()
                    self._journal_state("load", None)
                    break
                except JournalError as exc:
                    self._journal_state("load", exc)
                    await self._sleep(JOURNAL_RETRY)
            while True:
                self._journal.new_messages.clear()
                self._wake.clear()
                delay: float | None = None
                try:
                    await self.assign()
                    self._journal_state("assign", None)
                except JournalError as exc:
                    self._journal_state("assign", exc)
                    delay = JOURNAL_RETRY
                self._start_due()
                await self._wait(self._next_delay() if delay is None else delay)
        finally:
            senders = list(self._senders.values())
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)

    async def _load(self) -> None:
        for row in await pending_pushes(self._journal):
            self._queue[row.sms_id] = row
            self._due[row.sms_id] = 0.0

    async def assign(self) -> None:
        """Classify every pending message that has no pending push yet."""
        while True:
            done = await assign_pending(self._journal, ASSIGN_BATCH, self._matches, self._clock())
            left = done.no_operation + done.filtered
            if left:
                self._journal.backlog -= left
            for _ in range(done.no_operation):
                self._observer.push("unassigned")
            for _ in range(done.filtered):
                self._observer.push("filtered")
            for row in done.pushes:
                self._queue[row.sms_id] = row
                self._due.setdefault(row.sms_id, 0.0)
            if done.scanned < ASSIGN_BATCH:
                return

    def _groups(self) -> dict[str, list[PushRow]]:
        """Unsettled pushes per number, in order, for numbers without a running sender."""
        groups: dict[str, list[PushRow]] = {}
        for sms_id in sorted(self._queue):
            row = self._queue[sms_id]
            if row.number not in self._senders:
                groups.setdefault(row.number, []).append(row)
        return groups

    def _start_due(self) -> None:
        now = self._timer()
        groups = self._groups()
        if self._probing():
            # Failing for a while: a single probe, when the backoff allows and none is on the
            # wire.
            if self._senders or self.loop.wait() > 0:
                return
            due = {n: self._due.get(rows[0].sms_id, 0.0) for n, rows in groups.items()}
            first = min(due, key=lambda n: due[n], default=None)
            groups = {first: groups[first]} if first is not None and due[first] <= now else {}
        for number, rows in groups.items():
            if self._due.get(rows[0].sms_id, 0.0) <= now:
                task = asyncio.create_task(self._send_group(rows), name=f"push:{number}")
                self._senders[number] = task
                task.add_done_callback(functools.partial(self._finished, number))

    def _finished(self, number: str, _task: asyncio.Task[None]) -> None:
        self._senders.pop(number, None)
        self._wake.set()

    def _probing(self) -> bool:
        """Failing past the steady retries: one push at a time probes the upstream. Before
        that, a failure of one number's push holds up no other number."""
        return self.loop.attempts > PUSH_STEADY_RETRIES

    def _next_delay(self) -> float:
        heads = [self._due.get(rows[0].sms_id, 0.0) for rows in self._groups().values()]
        if not heads:
            return IDLE_POLL
        if self._probing():
            if self._senders:
                return IDLE_POLL  # the probe's end wakes us
            head = max(min(heads), self.loop.next_at)
            return max(0.0, min(head - self._timer(), IDLE_POLL))
        return max(0.0, min(min(heads) - self._timer(), IDLE_POLL))

    async def _wait(self, delay: float) -> None:
        """Until a message is journaled, a sender finishes, or ``delay`` passed (on the
        injected clock)."""
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waits = [
            asyncio.ensure_future(self._journal.new_messages.wait()),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._sleep_until(self._timer() + delay)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _sleep_until(self, when: float) -> None:
        # The delay is taken when the task starts, not when it was created: a clock that moved
        # in between (an injected one, in tests) does not stretch the wait.
        await self._sleep(max(0.0, when - self._timer()))

    async def _send_group(self, rows: list[PushRow]) -> None:
        async with self._limit:
            for k, row in enumerate(rows):
                started = self._timer()
                try:
                    settled = await self._push(row)
                    due = self.loop.next_at  # the policy's, from the failed attempt's start
                    self._journal_state("push", None)
                except JournalError as exc:
                    self._journal_state("push", exc)
                    settled, due = False, started + JOURNAL_RETRY
                except Exception:  # a bug must not stop every other number's pushes
                    LOGGER.exception("v1 pusher: PUSH_SMS %d failed unexpectedly", row.sms_id)
                    settled, due = False, started + PUSH_RETRY
                if not settled:
                    # The number's later SMS wait behind it (order per number).
                    for later in rows[k:]:
                        self._due[later.sms_id] = due
                    self._observer.push("retry")
                    return

    def _journal_state(self, what: str, exc: JournalError | None) -> None:
        """Log when ``what`` (loading, assigning, pushing) starts or stops failing on a journal
        error: one line per state change, not one per attempt of each number."""
        if exc is not None and what not in self._journal_failing:
            self._journal_failing.add(what)
            LOGGER.error("v1 pusher: %s paused: %s", what, exc)
        elif exc is None and what in self._journal_failing:
            self._journal_failing.discard(what)
            LOGGER.warning("v1 pusher: %s resumed: the journal records again", what)

    def payload(self, row: PushRow) -> dict[str, Any]:
        """The PUSH_SMS body (activation or rent): exact types, identical on every retry."""
        body: dict[str, Any] = {
            "smsId": row.activation_id if self._sms_id == "activation" else row.sms_id,
            "phoneFrom": row.sender,
            "phone": row.number.lstrip("+"),
            "text": row.text,
            "action": "PUSH_SMS",
            "key": self._key,
        }
        if row.rent:
            body["service"] = "rent"
        return self._policy.shape(body)

    async def _push(self, row: PushRow) -> bool:
        """One attempt; True when the push is settled (delivered or refused for good)."""
        answered = self._unrecorded.get(row.sms_id)
        if answered is not None:
            # Onlinesim answered for good already; only recording it failed: not sent again.
            return await self._settle(row, *answered)
        await mark_push_attempt(self._journal, [row.sms_id])
        attempt = self._policy.encode(self.payload(row))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {self._key}",
            "Accept-Encoding": "gzip",
        }
        headers.update(attempt.headers)
        url = self._rent_url if row.rent else self._url
        started = self._timer()
        retry_after: float | None = None
        try:
            async with self._http.post(
                url,
                data=attempt.data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PUSH_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                verdict, result = self._policy.verdict(
                    resp.status,
                    raw.decode("utf-8", "replace"),
                    attempt=attempt,
                    location=resp.headers.get("Location"),
                )
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            verdict, result = "retry", f"{type(exc).__name__}: {exc}"[:200]
        if verdict == "retry":
            self.last_error = result
            self.loop.failed(started, f"PUSH_SMS {row.sms_id}: {result}", retry_after)
            await note_push_failure(self._journal, row.sms_id, result)
            return False
        self.loop.succeeded()
        self._unrecorded[row.sms_id] = (verdict, result)
        return await self._settle(row, verdict, result)

    async def _settle(self, row: PushRow, verdict: Verdict, result: str) -> bool:
        """Record Onlinesim's final answer to a push (JournalError: kept, recorded later)."""
        assert verdict != "retry"
        state: PushState = "delivered" if verdict == "delivered" else verdict
        if await settle_push(self._journal, row, state, result, self._clock()):
            self._journal.backlog -= 1
        self._unrecorded.pop(row.sms_id, None)
        self._queue.pop(row.sms_id, None)
        self._due.pop(row.sms_id, None)
        if verdict == "delivered":
            self.delivered += 1
            self.last_error = None
            self._observer.push("success")
        else:
            LOGGER.info(
                "PUSH_SMS %d to %s refused for good: %s",
                row.sms_id,
                mask_number(row.number),
                result,
            )
            self._observer.push("no_operation" if verdict == "no_operation" else result.lower())
        return True
