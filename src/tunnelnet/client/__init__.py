"""A small typed HTTP client of the controller (tunnelnet server).

The records and errors it returns are the API contract's (`tunnelnet.api`); they are
re-exported here so that callers need one import.
"""

from __future__ import annotations

from tunnelnet.api import (
    ClientError,
    ConflictError,
    NotFoundError,
    Resource,
    ResyncRequired,
    Snapshot,
    WatchDecodeError,
    WatchEvent,
)
from tunnelnet.client.http import Client

__all__ = [
    "Client",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "Resource",
    "ResyncRequired",
    "Snapshot",
    "WatchDecodeError",
    "WatchEvent",
]
