"""A small typed HTTP client of the controller (tunnelnet server)."""

from __future__ import annotations

from tunnelnet.client.http import (
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    Resource,
    ResyncRequired,
    Snapshot,
)
from tunnelnet.server.events import WatchEvent

__all__ = [
    "Client",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "Resource",
    "ResyncRequired",
    "Snapshot",
    "WatchEvent",
]
