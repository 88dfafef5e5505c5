"""Errors of the controller, each with the HTTP status and the `type` the API reports.

They do not depend on HTTP: the service modules raise them and the REST layer (and any
in-process caller such as the lab's simulation) turns them into Neutron's error body,
`{"NeutronError": {"type", "message", "detail"}}`.
The `type` names follow Neutron's exception class names where Neutron has one, so clients that
know Neutron recognise them (`NetworkNotFound`, `IpAddressGenerationFailure`, ...).
"""

from __future__ import annotations

from tunnelnet.errors import TunnelnetError


class ApiError(TunnelnetError):
    """An error the API answers with `status` and Neutron's `{"NeutronError": {...}}`."""

    status = 500
    default_type = "InternalError"

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or self.default_type

    def as_body(self) -> dict[str, dict[str, str]]:
        return error_body(self.error_type, self.message)


def error_body(error_type: str, message: str, detail: str = "") -> dict[str, dict[str, str]]:
    """Neutron's error body: python-neutronclient and openstacksdk read `message` from it
    (`detail` is empty in Neutron's own answers too)."""
    return {"NeutronError": {"type": error_type, "message": message, "detail": detail}}


class BadRequest(ApiError):
    status = 400
    default_type = "BadRequest"


class Unauthorized(ApiError):
    status = 401
    default_type = "Unauthorized"


class Forbidden(ApiError):
    status = 403
    default_type = "PolicyNotAuthorized"


class NotFound(ApiError):
    status = 404
    default_type = "NotFound"


class MethodNotAllowed(ApiError):
    status = 405
    default_type = "MethodNotAllowed"


class Conflict(ApiError):
    status = 409
    default_type = "Conflict"


def not_found(resource: str, resource_id: str) -> NotFound:
    """The same answer for a missing id and for another project's id (existence must not leak)."""
    kind = resource.capitalize()
    return NotFound(f"{kind} {resource_id} could not be found.", f"{kind}NotFound")
