"""What API v1 earned: the running tally behind the earnings metrics, and reports and local
repairs on the journal's operations (``muxd v1 sales``, ``muxd v1 operations``).

An operation earns when Onlinesim finishes it with status 3 (success). Its amount is the
FINISH's ``sum`` when Onlinesim sent one (rent: the total over every extension), else the
GET_NUMBER's ``sum``. The journal keeps both; this module reads them.

The metrics count from 0 in each process (Prometheus counters: a restart is a counter reset,
which ``increase()`` and ``rate()`` handle). Restoring them from the journal at start looks
tempting but is wrong: closed operations are pruned after the journal's retention, so the
restored value can be lower than the last one exported, and ``increase()`` would read that
drop as a reset and count the whole restored total as new earnings. The journal's totals are
``muxd v1 sales``.

The report and repair functions open the journal file with their own connection (WAL: safe
beside a running daemon, which notices a local close through the journal's change counter).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from muxd.ports import PortInfo
from muxd.store.admin import _connect
from muxd.upstream.v1.operations import OP_COLUMNS, Operation, _operation

if TYPE_CHECKING:
    from muxd.upstream.v1.counts import Book

# FINISH_ACTIVATION status of a successful operation (the only one that earns).
SUCCESS = 3
# Statuses an operator may close an operation with locally (as FINISH_ACTIVATION takes them).
CLOSE_STATUSES = (1, 2, 3, 4, 5)
# The port label of an operation whose number is on no port now.
NO_PORT = "none"
# The service label of an operation whose service is not configured (never unbounded).
OTHER_SERVICE = "other"
RENT = "rent"

By = Literal["service", "port", "day"]


def earned_amount(op: Operation, finish_sum: float | None) -> float:
    """What a successful operation earned (RUB)."""
    if finish_sum is not None:
        return finish_sum
    return op.sum if op.sum is not None else 0.0


class Earnings:
    """Sales and RUB earned per service and port since this process started.

    Labels stay bounded: services are the configured ones (plus ``rent`` and ``other``),
    ports the fleet's (plus ``none``: the number is on no port now)."""

    def __init__(
        self, services: Iterable[str], port_of: Callable[[str], str | None] = lambda _n: None
    ) -> None:
        self.services: tuple[str, ...] = (*dict.fromkeys(services), RENT, OTHER_SERVICE)
        self._port_of = port_of
        self.earned: dict[tuple[str, str], float] = {}
        self.sales: dict[str, int] = dict.fromkeys(self.services, 0)

    def service_label(self, service: str) -> str:
        return service if service in self.services else OTHER_SERVICE

    def finished(self, op: Operation, status: int, finish_sum: float | None) -> None:
        """An operation was finished (first FINISH only) with ``status``."""
        if status != SUCCESS:
            return
        service = self.service_label(RENT if op.rent else op.service)
        port = self._port_of(op.number) or NO_PORT
        key = (service, port)
        self.earned[key] = self.earned.get(key, 0.0) + earned_amount(op, finish_sum)
        self.sales[service] += 1


def numbers_in_operation(ports: Iterable[PortInfo], book: Book) -> list[dict[str, Any]]:
    """``/api/numbers`` in v1 mode: every number on a port or in an open operation, and its
    operation, so a SIM-bank controller keeps numbers in an operation (above all a rent) in
    their ports."""
    rows: dict[str, dict[str, Any]] = {}
    for info in sorted(ports, key=lambda p: p.name):
        if info.number is not None and info.number not in rows:
            sellable = info.sellable
            rows[info.number] = {"number": info.number, "port": info.name, "sellable": sellable}
    for op in book.open_by_id.values():
        row = rows.setdefault(op.number, {"number": op.number, "port": None, "sellable": False})
        row |= {
            "activation_id": op.activation_id,
            "service": op.service,
            "rent": op.rent,
            "operation_since": op.created_at,
        }
    for row in rows.values():
        row.setdefault("activation_id", None)
        row["in_operation"] = row["activation_id"] is not None
    return [rows[n] for n in sorted(rows)]


# -- reports and local repairs on the journal (CLI) ------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleRow:
    key: str
    sales: int
    earned: float


def _ports_of(conn: sqlite3.Connection, numbers: set[str]) -> dict[str, str]:
    """The port each number's latest stored SMS part came from (the journal keeps no port per
    operation; a number with no SMS left in the journal has none)."""
    if not numbers:
        return {}
    marks = ",".join("?" * len(numbers))
    rows = conn.execute(
        f"SELECT number, port, max(received_at) FROM parts WHERE number IN ({marks})"
        " GROUP BY number",
        sorted(numbers),
    )
    return {str(n): str(p) for n, p, _t in rows}


def sales_report(conn: sqlite3.Connection, since: float | None, by: By) -> list[SaleRow]:
    """Successful operations finished at or after ``since`` (wall time), grouped ``by``."""
    rows = conn.execute(
        "SELECT service, rent, number, coalesce(finish_sum, sum, 0), finished_at"
        " FROM operations WHERE status = ? AND finished_at >= ?",
        (SUCCESS, since if since is not None else float("-inf")),
    ).fetchall()
    ports = _ports_of(conn, {str(r[2]) for r in rows}) if by == "port" else {}
    table: dict[str, tuple[int, float]] = {}
    for service, rent, number, amount, finished_at in rows:
        if by == "service":
            key = RENT if rent else str(service)
        elif by == "port":
            key = ports.get(str(number), NO_PORT)
        else:
            key = datetime.fromtimestamp(float(finished_at), UTC).strftime("%Y-%m-%d")
        count, total = table.get(key, (0, 0.0))
        table[key] = (count + 1, total + float(amount))
    return [SaleRow(k, c, round(t, 2)) for k, (c, t) in sorted(table.items())]


def sales(state_dir: Path, since: float | None, by: By) -> list[SaleRow]:
    with _connect(state_dir) as conn:
        return sales_report(conn, since, by)


def list_operations(
    state_dir: Path, *, open_only: bool = False, number: str | None = None, limit: int = 100
) -> list[tuple[Operation, float | None]]:
    """Latest operations first, each with its FINISH sum."""
    where, params = [], []
    if open_only:
        where.append("state = 'open'")
    if number is not None:
        where.append("number = ?")
        params.append(number)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with _connect(state_dir) as conn:
        rows = conn.execute(
            f"SELECT {OP_COLUMNS}, finish_sum FROM operations{clause}"
            " ORDER BY created_at DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
    return [(_operation(r[:-1]), None if r[-1] is None else float(r[-1])) for r in rows]


CloseOutcome = Literal["closed", "not_open", "unknown"]


def close_operation(state_dir: Path, activation_id: int, status: int, when: float) -> CloseOutcome:
    """Finish an open operation locally, as if its FINISH_ACTIVATION had arrived with
    ``status`` (a lost FINISH blocks its number otherwise). Status 3 marks the number sold for
    the service, like a FINISH does (rent never is)."""
    if status not in CLOSE_STATUSES:
        raise ValueError(f"status must be one of {CLOSE_STATUSES}")
    with _connect(state_dir) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT number, service, rent, state FROM operations WHERE activation_id = ?",
                (activation_id,),
            ).fetchone()
            outcome: CloseOutcome
            if row is None:
                outcome = "unknown"
            elif row[3] != "open":
                outcome = "not_open"
            else:
                conn.execute(
                    "UPDATE operations SET state = 'finished', status = ?, finished_at = ?"
                    " WHERE activation_id = ? AND state = 'open'",
                    (status, when, activation_id),
                )
                if status == SUCCESS and not row[2]:
                    conn.execute(
                        "INSERT OR IGNORE INTO sold(number, service, activation_id, sold_at)"
                        " VALUES (?,?,?,?)",
                        (row[0], row[1], activation_id, when),
                    )
                outcome = "closed"
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return outcome


def operation_json(op: Operation, finish_sum: float | None) -> dict[str, Any]:
    return {
        "activation_id": op.activation_id,
        "number": op.number,
        "service": op.service,
        "rent": op.rent,
        "state": op.state,
        "status": op.status,
        "sum": op.sum,
        "finish_sum": finish_sum,
        "created_at": op.created_at,
        "finished_at": op.finished_at,
    }
