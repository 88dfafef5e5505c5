"""The journey as data: bridge visits with their table steps, encapsulations, the outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Step:
    host: str
    bridge: str
    table: int
    priority: int  # -1: no flow matched (table miss)
    match: str
    actions: str
    cookie: str
    note: str  # what the switch itself says the step did
    explanation: str = ""  # plain words for someone learning the system (--explain)


@dataclass(slots=True)
class Exit:
    """One copy of the frame leaving a bridge."""

    port: str
    ofport: int
    kind: str  # vm | patch | tunnel | physical | port | drop
    vlan: int | None = None  # the 802.1Q id it carries out of this port
    vm: str | None = None  # the VM behind a vNIC
    next_visit: int | None = None
    encap: int | None = None  # index into Journey.encaps
    note: str = ""


@dataclass(slots=True)
class Visit:
    id: int
    host: str
    bridge: str
    in_port: str
    flow: str
    steps: list[Step]
    exits: list[Exit]
    drop: bool
    drop_reason: str | None
    final_flow: str
    parent: int | None = None
    explanation: str = ""
    # a "what if" visit, not on the path: the destination's hypervisor receiving the frame
    # with the source network's key, to show which of its tables refuses it
    hypothetical: bool = False
    # where the switch's own lookup floods a unicast frame: that it is a first-packet effect,
    # and where the frame goes once the switch has learned the destination (which is followed)
    learning: str = ""
    # Open vSwitch with the agent's MTU doctor: the longest frame (as it enters the bridge,
    # tags included) br-tun's check_pkt_larger lets through; a longer one goes to the agent
    mtu_check: int | None = None
    larger_steps: list[Step] = field(default_factory=list)  # what a longer frame takes


@dataclass(slots=True)
class Encap:
    type: str  # a tunnel kind's name (tunnelnet.packet.tunnel_kinds)
    from_host: str
    to_host: str | None
    tunnel_port: str
    remote_port: str | None
    outer_src: str
    outer_dst: str
    key: int  # VNI or GRE key
    udp_src: int | None  # VXLAN only (RFC 7348: a hash of the inner flow)
    udp_dst: int | None
    inner_length: int
    outer_ip_length: int
    outer_frame_length: int
    underlay_mtu: int
    fits: bool
    explanation: str = ""
    # the IP MTU this tunnel leaves the VM (the underlay's minus the kind's overhead, inner
    # Ethernet included), and what the switch does with a frame over it (packet/pmtu.py's
    # Oversize value, or "dropped silently" for a switch that does not answer); None: fits
    vm_mtu: int = 0
    oversize: str | None = None
    doctor: int | None = None  # Open vSwitch's MTU doctor weighed it: its check's length
    # the tunnel's BFD session when it is not up: "the tunnel to hv2 has been down for 12 s"
    liveness: str = ""


@dataclass(slots=True)
class End:
    host: str
    bridge: str
    table: int | None
    what: str  # delivered | answered | discarded | dropped | lost
    reason: str
    vm: str | None = None
    hypothetical: bool = False


@dataclass(slots=True)
class Outcome:
    delivered: bool
    summary: str
    reached_tunnel: bool
    ends: list[End] = field(default_factory=list)
    # a ping's verdict: the ARP for the destination's address was answered with its MAC and
    # its echo reply came back (None: not an ICMP echo)
    answered: bool | None = None
    arp_answer: str | None = None  # the MAC the ARP request for its address was answered with


@dataclass(slots=True)
class Journey:
    src: dict[str, Any]
    dst: dict[str, Any]
    packet: dict[str, Any]
    visits: list[Visit]
    encaps: list[Encap]
    outcome: Outcome
    live: dict[str, Any] | None = None
    # every frame the exchange takes, in order (ARP request, ARP reply, this packet, its
    # reply): what each was and where it ended; ``visits`` are this packet's own
    exchange: list[dict[str, Any]] = field(default_factory=list)
    learned: list[dict[str, Any]] = field(default_factory=list)  # what the switches learned

    def hops(self) -> list[dict[str, Any]]:
        """Every table step in walk order (host, bridge, table, priority, match, actions,
        explanation): the flat view of the journey."""
        return [{"visit": v.id, **asdict(s)} for v in self.visits for s in v.steps]

    def to_json(self) -> dict[str, Any]:
        data = {
            "src": self.src, "dst": self.dst, "packet": self.packet,
            "hops": self.hops(),
            "visits": [asdict(v) for v in self.visits],
            "encapsulation": [asdict(e) for e in self.encaps],
            "outcome": asdict(self.outcome),
            "exchange": self.exchange,
            "learned": self.learned,
        }
        if self.live is not None:
            data["live"] = self.live
        return data
