"""The records of the watch stream, one JSON object per line (NDJSON), versioned.

`event`: a change (resource, action, the object after it, or before it for a delete),
`bookmark`: nothing visible changed up to `revision` (sent when idle; also a keep-alive),
`resync`: the asked-for revision is too old (compacted) or unknown; list everything again and
watch from the revision the lists return. This is Kubernetes' list-and-watch contract.
The controller encodes these records, the client decodes them (both import this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tunnelnet.api import codec
from tunnelnet.api.errors import ClientError

VERSION = 1
EventType = Literal["event", "bookmark", "resync"]
_TYPES = ("event", "bookmark", "resync")
_ACTIONS = ("create", "update", "delete")


class WatchDecodeError(ClientError):
    """A line of the watch stream is not a valid record (the client's side of the contract)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0, "WatchDecodeError")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    revision: int
    resource: str | None = None
    action: str | None = None
    object: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": VERSION, "type": self.type, "revision": self.revision}
        if self.type == "event":
            data.update(resource=self.resource, action=self.action, object=self.object)
        return data

    def encode(self) -> bytes:
        return codec.dumps(self.as_dict()) + b"\n"

    @classmethod
    def decode(cls, line: bytes | str) -> WatchEvent:
        try:
            data = codec.loads(line)
        except ValueError as exc:
            raise WatchDecodeError(f"watch line is not JSON: {exc}") from None
        return cls.from_dict(data, line)

    @classmethod
    def from_dict(cls, data: Any, line: bytes | str = "") -> WatchEvent:
        if not isinstance(data, dict):
            raise WatchDecodeError("watch line is not a JSON object")
        kind, revision = data.get("type"), data.get("revision")
        if data.get("v") != VERSION:
            raise WatchDecodeError(f"watch record version {data.get('v')!r} is not {VERSION}")
        if kind not in _TYPES or not isinstance(revision, int) or isinstance(revision, bool):
            raise WatchDecodeError(f"watch record has a bad type or revision: {line!r}")
        if kind != "event":
            return cls(kind, revision)
        resource, action, obj = data.get("resource"), data.get("action"), data.get("object")
        if not isinstance(resource, str) or action not in _ACTIONS or not isinstance(obj, dict):
            raise WatchDecodeError(f"watch event is incomplete: {line!r}")
        return cls("event", revision, resource, action, obj)
