"""Access control of the operator's HTTP endpoint: a bearer token and a ``Host`` check.

- **Token** (``http.token``): every route but ``/healthz`` and ``/readyz`` (probes of load
  balancers and service managers, which show no SIM data) wants ``Authorization: Bearer TOKEN``;
  a browser may give the token as the password of HTTP Basic authentication (any user name), so
  the status page works without anything in its address. The comparison is constant-time. Failed
  attempts are logged at most once per :data:`FAILED_LOG_INTERVAL`, with their count.
- **Host** check against DNS rebinding: a page on another site whose name is made to resolve to
  127.0.0.1 would reach the endpoint with its own name in ``Host``. Only IP literals,
  ``localhost`` and the names in ``http.hosts`` are served; anything else gets 421.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

LOGGER = logging.getLogger(__name__)

# Routes that answer without the token: liveness and readiness probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Failed logins are logged at most this often (with how many there were), never one per request.
FAILED_LOG_INTERVAL = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True for a listen host that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """``Host`` header -> the name or address, without port and brackets, lower-cased."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    if not header:
        return False
    host = _host_name(header)
    if host == "localhost" or host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _presented_token(auth: str | None) -> str | None:
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


class FailedLogins:
    """Counts refused requests and logs a summary at most once per interval."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        what: str = "http: %d request(s) refused without a valid token",
        logger: logging.Logger = LOGGER,
    ) -> None:
        self._clock = clock
        self._count = 0
        self._last_log: float | None = None
        self._line = f"{what} (latest from %s)"  # what: the line, with %d for the count
        self._logger = logger

    def failed(self, peer: str | None) -> None:
        self._count += 1
        now = self._clock()
        if self._last_log is None or now - self._last_log >= FAILED_LOG_INTERVAL:
            self._logger.warning(
                self._line,
                self._count,
                peer or "?",
            )
            self._count = 0
            self._last_log = now


def guard(*, token: str, hosts: Iterable[str], failed: FailedLogins | None = None) -> Middleware:
    """An aiohttp middleware enforcing the Host check and, when ``token`` is set, the token."""
    names = frozenset(h.lower() for h in hosts)
    expected = token.encode()
    failures = failed or FailedLogins()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), names):
            return web.Response(status=421, text="unknown Host: add it to http.hosts\n")
        if expected and request.path not in OPEN_PATHS:
            presented = _presented_token(request.headers.get("Authorization"))
            if presented is None or not hmac.compare_digest(presented.encode(), expected):
                failures.failed(request.remote)
                return web.Response(
                    status=401,
                    text="token required\n",
                    headers={"WWW-Authenticate": 'Basic realm="muxd", charset="UTF-8"'},
                )
        return await handler(request)

    return middleware
