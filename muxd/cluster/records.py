"""What the cluster's shared state holds, as plain values, and its errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from muxd.errors import MuxdError

# A box name: letters, digits, "_", "-", "."; it becomes part of a LISTEN channel name, which
# PostgreSQL caps at 63 bytes together with the channel prefix.
BOX_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
# The prefix of each box's channel announcing its new operations.
CHANNEL_PREFIX: Final = "muxd_ops_"
RENT: Final = "rent"
ANY: Final = "any"

FinishOutcome = Literal["finished", "late", "repeat", "unknown"]


class ClusterError(MuxdError):
    """The cluster's database is not what this muxd expects (schema too new, bad box name)."""


class ClusterUnavailable(MuxdError):
    """PostgreSQL did not answer in time or the connection failed: the shared state cannot be
    read or changed right now. The caller answers "no numbers" and carries on locally."""


def channel(box: str) -> str:
    """The LISTEN/NOTIFY channel announcing new operations whose SIM is on ``box``."""
    return CHANNEL_PREFIX + box


def check_box_name(name: str) -> str | None:
    """None when ``name`` is a usable box name, else what is wrong with it."""
    if BOX_NAME.fullmatch(name):
        return None
    return (
        f"expected 1 to 48 letters, digits, '_', '-' or '.' (starting with a letter or digit),"
        f" got {name!r}"
    )


@dataclass(frozen=True, slots=True)
class NumberEntry:
    """One number a box offers: what :meth:`ClusterStore.publish_numbers` stores."""

    number: str  # +E.164
    port: str
    iccid: str | None
    country: str  # the country name GET_SERVICES and GET_NUMBER use
    country_id: int | None  # E.164 calling code
    operator: str  # the operator name GET_SERVICES and GET_NUMBER use
    sellable: bool = True
    operator_code: int | None = None  # the SIM's MCC+MNC (v2's "operator")
    date_start: int | None = None  # since when the SIM is in its port, UNIX seconds


@dataclass(frozen=True, slots=True)
class Criteria:
    """What a GET_NUMBER asks for, as its reservation statement takes it (see
    :meth:`of`): requests with equal criteria are reserved together, one statement a group."""

    country: str  # stripped, lower case
    operator: str  # stripped, lower case; "any" for any operator
    service: str  # "rent" for a rent request
    masks: tuple[str, ...]  # exception prefixes (digits), sorted, each once
    rent: bool

    @classmethod
    def of(
        cls, country: str, operator: str, service: str, masks: Iterable[str], rent: bool
    ) -> Criteria:
        return cls(
            country=country.strip().lower(),
            operator=operator.strip().lower() or ANY,
            service=RENT if rent else service,
            masks=tuple(sorted(set(masks))),
            rent=rent,
        )


@dataclass(frozen=True, slots=True)
class LiveNumber:
    """A sellable number on a box whose lease is valid."""

    number: str
    box: str
    port: str
    country: str
    operator: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One v1 operation (GET_NUMBER answered), as the shared state holds it."""

    activation_id: int
    number: str  # +E.164
    box: str  # the box holding the SIM: it pushes the SMS
    service: str  # "rent" for a rent operation
    country: str
    operator: str
    sum: float | None
    rent: bool
    state: str  # open | finished | expired
    status: int | None
    created: datetime
    expires: datetime | None  # None: no expiry (rent)
    finished: datetime | None
    finish_sum: float | None = None  # the FINISH's sum, when Onlinesim sent one


@dataclass(frozen=True, slots=True)
class BoxState:
    """A box as ``muxd cluster status`` shows it."""

    name: str
    version: str
    started: datetime
    lease_until: datetime
    lease_left: float  # seconds the lease still runs by the database's clock (< 0: lapsed)
    numbers: int
    sellable: int
    open_operations: int

    @property
    def live(self) -> bool:
        return self.lease_left > 0


class Row(Protocol):
    """A database row read by column name (an asyncpg record)."""

    def __getitem__(self, key: str, /) -> Any: ...


def operation_from_row(row: Row) -> Operation:
    """An ``operations`` row (the columns of :data:`muxd.cluster.queries.OP_COLUMNS`)."""
    return Operation(
        activation_id=int(row["activation_id"]),
        number=str(row["number"]),
        box=str(row["box"]),
        service=str(row["service"]),
        country=str(row["country"]),
        operator=str(row["operator"]),
        sum=None if row["sum"] is None else float(row["sum"]),
        rent=bool(row["rent"]),
        state=str(row["state"]),
        status=None if row["status"] is None else int(row["status"]),
        created=row["created"],
        expires=row["expires"],
        finished=row["finished"],
        finish_sum=None if row["finish_sum"] is None else float(row["finish_sum"]),
    )


def mask_patterns(masks: Iterable[str]) -> list[str]:
    """``exceptionPhoneSet`` prefixes (digits) -> LIKE patterns; anything else is refused, a
    mask that cannot be read must not be ignored (the number it excludes could go out)."""
    out = []
    for mask in masks:
        if not mask.isascii() or not mask.isdigit():
            raise ValueError(f"exception mask must be digits, got {mask!r}")
        out.append(mask + "%")
    return out
