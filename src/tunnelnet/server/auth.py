"""Who is calling: admin, agent or a project, from the `X-Auth-Token` header.

Project tokens are random secrets that only admin makes; the store keeps their SHA-256, never
the secret (a stolen database yields no usable token). The admin and agent tokens come from
the configuration and are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from tunnelnet.server.errors import BadRequest, Forbidden, Unauthorized
from tunnelnet.store.base import Txn

ADMIN_PROJECT = "admin"
# what keystoneauth's `none` plugin sends as X-Auth-Token (keystoneauth1.noauth)
NOAUTH_PLACEHOLDER = "notused"
PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    project_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def sees_all(self) -> bool:
        """Admin and agents read every project's resources."""
        return self.role in (Role.ADMIN, Role.AGENT)

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"{what} requires the admin token")

    def require_writer(self, what: str) -> None:
        """Agent tokens read everything but change only agents and port status."""
        if self.role is Role.AGENT:
            raise Forbidden(f"{what} is not allowed with the agent token")

    def require_admin_or_agent(self, what: str) -> None:
        if not self.sees_all:
            raise Forbidden(f"{what} requires the admin or agent token")


ADMIN = Caller(Role.ADMIN, ADMIN_PROJECT)
AGENT = Caller(Role.AGENT, None)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_project_id(value: str, field: str = "project_id") -> str:
    if not isinstance(value, str) or not PROJECT_ID.match(value):
        raise BadRequest(
            f"{field} {value!r} must be 1-64 letters, digits, '_', '.' or '-'", "InvalidInput"
        )
    return value


def configured_caller(admin_token: str, agent_token: str, token: str | None) -> Caller | None:
    """The admin or agent of the configuration, without touching the store; None otherwise."""
    if not token:
        raise Unauthorized("missing X-Auth-Token header")
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return ADMIN
    if agent_token and hmac.compare_digest(token.encode(), agent_token.encode()):
        return AGENT
    return None


def authenticate(txn: Txn, admin_token: str, agent_token: str, token: str | None) -> Caller:
    configured = configured_caller(admin_token, agent_token, token)
    if configured is not None:
        return configured
    if not token:  # refused above already; this narrows the type
        raise Unauthorized("missing X-Auth-Token header")
    doc = txn.get("token", token_hash(token))
    if doc is None and token == NOAUTH_PLACEHOLDER:
        raise Unauthorized(
            "no token: keystoneauth's `auth_type: none` sends the placeholder 'notused'; give "
            "a tunnelnet token (--os-auth-type admin_token --os-token TOKEN) or run the server "
            'with auth_strategy = "noauth"'
        )
    if doc is None:
        raise Unauthorized("the token is not valid")
    role = Role(doc["role"])
    return Caller(role, doc.get("project_id"))


def new_token() -> str:
    return secrets.token_urlsafe(32)
