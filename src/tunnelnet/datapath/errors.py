"""Exceptions of the datapath layer (the vswitchd runtime and its control socket)."""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class DatapathError(TunnelnetError):
    """A request to the datapath that cannot be done (unknown bridge, duplicate port, ...)."""


class PortError(DatapathError):
    """A port could not be created or configured (bad options, missing interface, ...)."""


class ProtocolError(DatapathError):
    """A control-socket message that is not a valid request or response.

    ``request_id`` is the id of the bad request when it could be read, so the answer to it
    can still be matched by the client."""

    def __init__(self, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.request_id = request_id


class ControlError(DatapathError):
    """The daemon refused a request; the message is the daemon's own.

    ``kind`` names the error class on the daemon side (``DatapathError``, ``FlowSyntaxError``...)
    so a caller can tell a bad flow from an unknown bridge without parsing text.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotRunningError(DatapathError):
    """No vswitchd answers on the control socket of the run directory."""
