"""The one exception the PDU codec raises."""

from __future__ import annotations

__all__ = ["PduError"]


class PduError(ValueError):
    """A PDU (or an argument to an encoder) is malformed.

    The message says what is wrong; when the problem sits at a known place in the
    input, ``offset`` is that octet offset (counted from the first octet handed to
    :func:`muxd.pdu.decode_pdu`, SMSC prefix included) and the message ends with
    ``(octet N)``.
    """

    offset: int | None

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = f"{message} (octet {offset})"
        super().__init__(message)
        self.offset = offset
