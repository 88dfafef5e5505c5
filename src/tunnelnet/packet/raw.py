"""Bytes the codec does not interpret: an application payload, and Ethernet padding after the
end of a packet (frames are padded to 60 bytes on the wire)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Payload:
    data: bytes

    name: ClassVar[str] = "payload"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "length": len(self.data), "data": self.data.hex()}


@dataclass(frozen=True, slots=True)
class Padding(Payload):
    name: ClassVar[str] = "padding"
