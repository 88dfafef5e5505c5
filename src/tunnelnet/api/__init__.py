"""The API contract: the typed records the controller and its clients both speak.

The controller (`tunnelnet.server`) writes these records and the client (`tunnelnet.client`),
and through it the agent, reads them; neither side imports the other, both import this. So
this package imports nothing of server, client or agent (a unit test walks the imports), and
nothing heavier than the standard library and orjson (the JSON codec of both ends), so a
client needs none of the server's packages.

    events    the watch stream's records (event, bookmark, resync), versioned NDJSON
    snapshot  everything visible at one revision, the start of list-and-watch
    errors    the errors a client sees, one tree under ClientError, built from HTTP status
    codec     JSON on the wire (orjson, falling back to the standard library)
"""

from __future__ import annotations

from tunnelnet.api.errors import (
    ClientError,
    ConflictError,
    NotFoundError,
    ResyncRequired,
    error_for_status,
)
from tunnelnet.api.events import VERSION, EventType, WatchDecodeError, WatchEvent
from tunnelnet.api.snapshot import REVISION_HEADER, Resource, Snapshot

__all__ = [
    "REVISION_HEADER",
    "VERSION",
    "ClientError",
    "ConflictError",
    "EventType",
    "NotFoundError",
    "Resource",
    "ResyncRequired",
    "Snapshot",
    "WatchDecodeError",
    "WatchEvent",
    "error_for_status",
]
