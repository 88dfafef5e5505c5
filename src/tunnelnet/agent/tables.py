"""The declared pipelines of br-int and br-tun: table ids, names, purposes, what a miss does.

The numbers are Neutron's (ovs_constants), so that a dump read here reads the same as on an
OpenStack hypervisor. Flow builders and the trace's explanations both read these records, so a
table's id and meaning are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final


class TunTable(IntEnum):
    """Tables of the tunnel bridge br-tun."""

    CLASSIFY = 0  # by in_port: from patch-int, or from which tunnel type
    PATCH_LV_TO_TUN = 2  # from br-int: unicast or flood
    GRE_TUN_TO_LV = 3  # GRE key -> local VLAN
    VXLAN_TUN_TO_LV = 4  # VNI -> local VLAN
    LEARN_FROM_TUN = 10  # learn "MAC is behind that tunnel", then to br-int
    UCAST_TO_TUN = 20  # known unicast -> one tunnel
    ARP_RESPONDER = 21  # answer ARP requests locally (l2pop)
    FLOOD_TO_TUN = 22  # broadcast/unknown -> every tunnel of the network


class IntTable(IntEnum):
    """Tables of the integration bridge br-int."""

    LOCAL_SWITCHING = 0
    CANARY = 23  # a flow the agent checks to notice a switch restart
    TRANSIENT = 60  # hands frames to NORMAL


# The local VLAN that marks "not bound yet": a vNIC on it can neither send nor receive
# (Neutron bug 1734320: an unbound port must never see another tenant's traffic).
DEAD_VLAN: Final = 4095

TUNNEL_TABLE: Final[dict[str, TunTable]] = {
    "gre": TunTable.GRE_TUN_TO_LV,
    "vxlan": TunTable.VXLAN_TUN_TO_LV,
}


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: int
    name: str
    purpose: str
    on_miss: str


BR_TUN_PIPELINE: Final[tuple[TableSpec, ...]] = (
    TableSpec(0, "classify", "sorts frames by the port they came in on: patch-int to table 2, "
              "a GRE tunnel to 3, a VXLAN tunnel to 4", "drop"),
    TableSpec(2, "patch_lv_to_tun", "frames from br-int: unicast to table 20, broadcast and "
              "multicast to 22 (ARP requests to 21 with the ARP responder)", "drop"),
    TableSpec(3, "gre_tun_to_lv", "translates a GRE key into this host's local VLAN", "drop"),
    TableSpec(4, "vxlan_tun_to_lv", "translates a VXLAN VNI into this host's local VLAN",
              "drop"),
    TableSpec(10, "learn_from_tun", "learns that the source MAC sits behind the tunnel the "
              "frame came from, like a learning switch, then hands the frame to br-int", "drop"),
    TableSpec(20, "ucast_to_tun", "sends a known unicast MAC down the one tunnel behind which "
              "it lives", "flood (table 22)"),
    TableSpec(21, "arp_responder", "answers ARP requests for known VM addresses on the spot",
              "flood (table 22)"),
    TableSpec(22, "flood_to_tun", "floods to every tunnel that carries the frame's network, "
              "with the network's key", "drop"),
)

BR_INT_PIPELINE: Final[tuple[TableSpec, ...]] = (
    TableSpec(0, "local_switching", "drops frames of unbound ports (dead VLAN 4095), passes the "
              "rest on", "drop"),
    TableSpec(23, "canary", "holds one flow whose absence tells the agent the switch restarted",
              "drop"),
    TableSpec(60, "transient", "hands frames to NORMAL: MAC learning per local VLAN", "drop"),
)
