"""The errors a client of the controller sees: one tree, rooted at ClientError.

Each carries the HTTP status and the API's error `type` (Neutron's exception names where
Neutron has one: `NetworkNotFound`, `IpAddressGenerationFailure`, ...), so callers act on
`error_type` and the CLI prints one line. The HTTP client and any in-process stand-in build
them with the same `error_for_status`, so callers cannot tell the two apart.
"""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class ClientError(TunnelnetError):
    """The API answered with an error, or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0, error_type: str = "ConnectionError"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type

    def __str__(self) -> str:
        if self.status:
            return f"{self.message} ({self.error_type}, HTTP {self.status})"
        return self.message


class NotFoundError(ClientError):
    """HTTP 404: no such resource (or one of another project)."""


class ConflictError(ClientError):
    """HTTP 409: in use, taken, exhausted."""


class ResyncRequired(ClientError):
    """HTTP 410 from the event poll: the changes after the asked-for revision are no longer
    kept (compacted) or never were (the controller's database was replaced). Not a failure:
    list everything again, then watch from the revision the list returns."""

    STATUS = 410
    TYPE = "ResyncRequired"


_BY_STATUS: dict[int, type[ClientError]] = {
    404: NotFoundError,
    409: ConflictError,
    ResyncRequired.STATUS: ResyncRequired,
}


def error_for_status(message: str, status: int, error_type: str) -> ClientError:
    """The client error for an API error answer (its most specific class for `status`)."""
    return _BY_STATUS.get(status, ClientError)(message, status, error_type)
