"""Metrics hooks of the v1 service. The default does nothing; app.py subclasses it and
forwards to :class:`muxd.metrics.Metrics` (the module that owns every metric)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from muxd.upstream.v1.operations import Operation


class V1Observer:
    def request(self, action: str, result: str, seconds: float) -> None:
        """One request to muxd's v1 server. ``action``: GET_SERVICES, GET_NUMBER,
        FINISH_ACTIVATION or ``unknown``; ``result``: ``success``, ``no_numbers``,
        ``unauthorized``, ``bad_request``, ``unknown_operation``, ``error``."""

    def push(self, result: str) -> None:
        """One SMS's fate or one PUSH_SMS attempt: ``success``, ``retry``, ``no_operation``,
        ``bad_service``, ``ignored``, ``service_ban`` (Onlinesim's answers), ``filtered``
        (local filter) and ``unassigned`` (no operation open: kept, not pushed)."""

    def operations_open(self, count: int) -> None:
        """Open operations now (after every change)."""

    def missing_user_agent(self) -> None:
        """A request without a User-Agent header (tolerated, counted)."""

    def finished(self, op: Operation, status: int, finish_sum: float | None) -> None:
        """The first FINISH_ACTIVATION of ``op`` (or a local close), with its ``sum``."""
