"""The muxd error tree: each error says whose fault it is."""

from __future__ import annotations


class MuxdError(Exception):
    """Base of every error muxd raises on purpose."""


class ConfigError(MuxdError):
    """The operator's configuration is wrong; the message names the file and the key."""


class ModemError(MuxdError):
    """Something went wrong talking to one modem."""


class ModemProtocolError(ModemError):
    """The modem misbehaved (garbage, unexpected answer): resync or reset."""


class AtCommandError(ModemError):
    """The modem answered a command with ERROR / +CME ERROR / +CMS ERROR (a valid answer)."""

    def __init__(self, command: str, kind: str, code: int | None, line: str) -> None:
        super().__init__(f"{command}: {line}")
        self.command = command
        self.kind = kind
        self.code = code


class AtTimeoutError(ModemError, TimeoutError):
    """A command got no final result before its deadline."""


class PortClosedError(ModemError):
    """The port went away (unplugged, closed) while a command was in flight."""


class JournalError(MuxdError):
    """The journal cannot store: intake must stop, nothing may be deleted from modems."""


class UpstreamError(MuxdError):
    """Onlinesim refused or failed a request."""

    def __init__(
        self, endpoint: str, status: int, body: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{endpoint}: HTTP {status}: {body[:200]}")
        self.endpoint = endpoint
        self.status = status
        self.body = body
        # Seconds the upstream asked us to wait (its Retry-After header), when it said so.
        self.retry_after = retry_after


def listen_error(key: str, address: str, exc: OSError) -> ConfigError:
    """A listener that could not bind, as one line naming the config key (no traceback)."""
    return ConfigError(f"{key}: cannot listen on {address}: {exc.strerror or exc}")


def first_muxd_error(group: BaseExceptionGroup[BaseException]) -> MuxdError | None:
    """The first MuxdError in a (nested) exception group, e.g. from a TaskGroup."""
    for exc in group.exceptions:
        if isinstance(exc, MuxdError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = first_muxd_error(exc)
            if found is not None:
                return found
    return None


class ModemHungError(ModemError):
    """After a timeout the session could not prove which answer is whose: reopen the port."""


class SyncLostError(ModemError):
    """A command tied to an epoch (a delete after a read) was not sent: sync was lost since."""
