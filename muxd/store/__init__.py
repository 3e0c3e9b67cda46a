"""Durable storage: the SQLite journal."""

from muxd.store.journal import Journal, PartIn, PendingMessage, PutResult

__all__ = ["Journal", "PartIn", "PendingMessage", "PutResult"]
