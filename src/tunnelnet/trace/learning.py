"""What the switches on a journey's way learn from the journey's own frames.

A trace asks each switch without side effects (``ofproto/trace``), so by itself it never
learns: a unicast frame to a MAC nothing has taught the switch is flooded, as the very first
frame of a conversation is. A ping is not a first frame: the ARP request (broadcast, so every
switch on its way learns the sender's MAC and port) and the ARP reply (which teaches the
switches on the way back where the destination is) come first. This table records those
lessons per (host, bridge, VLAN): the walker consults it where a switch's own lookup floods a
unicast frame, and then follows only the learned port, saying so.

The lessons are what Open vSwitch's NORMAL action learns (source MAC per VLAN on the input
port), what br-tun's table 10 learns (source MAC behind the tunnel it came from, per local
VLAN), and what the lab's physical switch (a learning Linux bridge) learns per VLAN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

PHYSICAL_SWITCH: Final = "physical switch"  # the bridge name of the lab's underlay switch
UNDERLAY: Final = "underlay"  # its host name


@dataclass(frozen=True, slots=True)
class Lesson:
    host: str
    bridge: str
    vlan: int | None
    mac: str
    port: str  # where frames from ``mac`` came in: where frames to it go
    by: str  # which of the journey's frames taught it

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "bridge": self.bridge, "vlan": self.vlan, "mac": self.mac,
                "port": self.port, "by": self.by}


@dataclass(slots=True)
class Learned:
    lessons: dict[tuple[str, str, int | None, str], Lesson] = field(default_factory=dict)
    teacher: str = ""  # the frame being walked now (a lesson's ``by``)

    def learn(self, host: str, bridge: str, vlan: int | None, mac: str, port: str) -> None:
        mac = mac.lower()
        if int(mac.split(":")[0], 16) & 1:
            return  # a group address is never a source to learn
        key = (host, bridge, vlan, mac)
        if key not in self.lessons or self.lessons[key].port != port:
            self.lessons[key] = Lesson(host, bridge, vlan, mac, port, self.teacher)

    def where(self, host: str, bridge: str, vlan: int | None, mac: str) -> Lesson | None:
        return self.lessons.get((host, bridge, vlan, mac.lower()))


def is_unicast(mac: str) -> bool:
    return bool(mac) and not int(mac.split(":")[0], 16) & 1
