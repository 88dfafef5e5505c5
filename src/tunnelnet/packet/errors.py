"""The one exception the packet codec raises for bad bytes or unbuildable headers."""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class PacketError(TunnelnetError):
    """A frame or header that is malformed, truncated, unsupported or unbuildable.

    ``offset`` is the byte offset in the buffer being read where the problem is (``None`` when
    building, where there is no buffer yet). The datapath counts and drops such packets, so the
    message names the layer and the field: it ends up in a counter's log line.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        self.reason = message
        super().__init__(message if offset is None else f"{message} at offset {offset}")
