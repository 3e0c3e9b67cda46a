"""Durable storage: the SQLite journal."""

from muxd.store.intake import PartIn, PendingMessage, PutResult
from muxd.store.journal import Journal

__all__ = ["Journal", "PartIn", "PendingMessage", "PutResult"]
