"""Neutron's pipelines, declared once: each table's id, name, purpose, next tables and miss.

The agent's flow builders take their table ids and priorities from here, the switch's
``--explain`` and the trace's explanations take their words from here, and a test checks that
every flow the agent builds only resubmits to a next table its table declares. The ids and
names are Neutron's (``ovs_constants``), so a dump read here reads as on an OpenStack
hypervisor. The tables that turn a tunnel key into a local VLAN (GRE 3, VXLAN 4, Geneve 6)
are not written here: each registered tunnel kind brings its own
(``tunnelnet.packet.tunnel_kinds``, ``neutron_table``), so a new kind gets its table, its
record and its flows from its registry entry alone.

Only the tables tunnelnet's agent programs are declared: Neutron's DVR_NOT_LEARN (9, DVR
only) has no flows here. Port security's ARP_SPOOF_TABLE (24) and MAC_SPOOF_TABLE (25) are
Neutron's (its agent's ARP spoofing protection); table 25 also checks the IP source, which
Neutron leaves to its firewall driver and tunnelnet, without one, does here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.tunnel_kinds import TunnelKind


class TunTable(IntEnum):
    """br-tun's tables other than the per-kind tunnel-to-local-VLAN ones."""

    LOCAL_SWITCHING = 0  # by in_port: from patch-int, or from a tunnel of which kind
    PATCH_LV_TO_TUN = 2  # from br-int: unicast, flood, or ARP to the responder
    LEARN_FROM_TUN = 10  # learn "MAC is behind that tunnel", then to br-int
    UCAST_TO_TUN = 20  # known unicast -> one tunnel
    ARP_RESPONDER = 21  # answer ARP requests locally (l2pop)
    FLOOD_TO_TUN = 22  # broadcast/unknown -> every tunnel of the network


class IntTable(IntEnum):
    """br-int's tables."""

    LOCAL_SWITCHING = 0
    CANARY = 23  # a flow the agent checks to notice a switch restart
    ARP_SPOOF = 24  # ARP and neighbour advertisements of a protected port: its addresses only
    MAC_SPOOF = 25  # anything from a protected port: only from its MACs (and IP addresses)
    TRANSIENT = 60  # hands frames to NORMAL


class PhysTable(IntEnum):
    """A physical bridge's (``br-eth1`` for ``physnet1:br-eth1``) one table."""

    LOCAL_SWITCHING = 0


# Priority bands, Neutron's numbers. Priorities only compete inside one table, so a number can
# mean different things in different tables; a band names what its flows are for. Two names
# for one number are aliases on purpose (the same value, two meanings in two tables).


class TunPriority(IntEnum):
    """Priority bands of br-tun's flows."""

    DEFAULT = 0  # a table's catch-all; table 2's unicast/multicast split is its default too
    ENTRY = 1  # per port, per network key, per flood list, per ARP address; table 10's learn
    LEARNED = 1  # what table 10 writes into table 20: below what l2population announced
    L2POP = 2  # table 20: a MAC l2population announced outranks a learned one
    # Open vSwitch hosts only (the MTU doctor, agent/mtu_doctor.py): table 0 weighs each frame
    # of a local tunnel network from patch-int against the network's MTU before table 2, and
    # table 2 sends the ones found too big to the agent, above the unicast/flood split
    MTU_CHECK = 2
    TOO_BIG = 2


class IntPriority(IntEnum):
    """Priority bands of br-int's flows."""

    DEFAULT = 0  # table 0's catch-all: on to table 60; tables 24 and 25: drop the rest
    PORT_DROP = 2  # everything from one port (an unbound vNIC, an untranslated patch)
    ALLOWED = 2  # tables 24/25: an address the port owns goes on (Neutron's priority 2)
    FROM_PHYSNET = 3  # a provider VLAN (or untagged frame) becomes a local VLAN
    NORMAL = 3  # table 60: hand to NORMAL
    IP_SPOOF_DROP = 3  # table 25: IPv4/IPv6 from a source the port does not own
    ALLOWED_SOURCE = 4  # table 25: a (MAC, IP) pair the port owns, and DHCP before an address
    SERVICE_DROP = 5  # table 25: DHCP server replies and router advertisements from a VM
    TO_MAC_SPOOF = 9  # table 0: everything from a protected port to table 25 (Neutron's 9)
    TO_ARP_SPOOF = 10  # table 0: ARP and IPv6 NA of a protected port to 24 (Neutron's 10)
    DEAD_VLAN = 65535  # the dead VLAN is never switched, above everything


class PhysPriority(IntEnum):
    """Priority bands of a physical bridge's flows."""

    DEFAULT = 0  # NORMAL for what the uplink brings
    PORT_DROP = 2  # a local VLAN from br-int that no network here translates
    TO_PHYSNET = 4  # a local VLAN becomes the provider VLAN (or untagged, for flat)


@dataclass(frozen=True, slots=True)
class TableDecl:
    """One table: its id and Neutron's name for it, what it is for, where it may go next.

    ``next_tables`` are the tables its flows may resubmit (or goto) to; ``learns_into`` the
    tables its learn() actions write into. ``miss`` is what becomes of a frame none of its
    entries match: the actions of the table's catch-all (its lowest-priority match-everything
    flow), as ovs-ofctl writes them; None where the entries already cover every frame (table
    2's unicast/multicast halves, table 10's one flow).
    """

    table: int
    name: str
    purpose: str
    next_tables: tuple[int, ...] = ()
    miss: str | None = "drop"
    learns_into: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    tables: dict[int, TableDecl] = field(default_factory=dict)

    def describe(self, table: int) -> TableDecl | None:
        return self.tables.get(table)

    def may_go(self, table: int, to: int) -> bool:
        """True when ``table`` declares ``to`` as a next table (resubmit or goto)."""
        decl = self.tables.get(table)
        return decl is not None and to in decl.next_tables


def _pipeline(name: str, decls: Iterable[TableDecl]) -> Pipeline:
    return Pipeline(name, {d.table: d for d in sorted(decls, key=lambda d: d.table)})


def tun_to_lv_name(kind: TunnelKind) -> str:
    """Neutron's name for a kind's key -> local VLAN table: VXLAN_TUN_TO_LV, GRE_TUN_TO_LV."""
    return f"{kind.name.upper()}_TUN_TO_LV"


def tunnel_kinds_by_table() -> tuple[TunnelKind, ...]:
    """The registered tunnel kinds in the order of their br-tun tables (GRE 3, VXLAN 4, ...)."""
    return tuple(sorted(tunnel_kinds.all_kinds(), key=lambda k: k.neutron_table))


def br_tun_pipeline(kinds: tuple[TunnelKind, ...]) -> Pipeline:
    """br-tun for these tunnel kinds: each brings its key -> local VLAN table."""
    t = TunTable
    by_kind = ", ".join(f"a {k.title} tunnel to {k.neutron_table}" for k in kinds)
    return _pipeline("br-tun", [
        TableDecl(t.LOCAL_SWITCHING, t.LOCAL_SWITCHING.name,
                  f"sorts frames by the port they came in on: patch-int to table 2, {by_kind}; "
                  "on Open vSwitch, a local tunnel network's frame from patch-int is weighed "
                  "against the network's MTU on the way (check_pkt_larger into reg0[0])",
                  (t.PATCH_LV_TO_TUN, *(k.neutron_table for k in kinds))),
        TableDecl(t.PATCH_LV_TO_TUN, t.PATCH_LV_TO_TUN.name,
                  "takes frames from br-int: unicast to table 20, broadcast and multicast to 22 "
                  "(ARP requests to 21 with the ARP responder); on Open vSwitch, a frame "
                  "table 0 found too big for its network's tunnels goes to the agent's MTU "
                  "doctor, which answers it as our vswitchd's datapath does",
                  (t.UCAST_TO_TUN, t.ARP_RESPONDER, t.FLOOD_TO_TUN), miss=None),
        *(TableDecl(k.neutron_table, tun_to_lv_name(k),
                    f"translates a {k.title} {k.key_name} into this host's local VLAN",
                    (t.LEARN_FROM_TUN,)) for k in kinds),
        TableDecl(t.LEARN_FROM_TUN, t.LEARN_FROM_TUN.name,
                  "learns that the source MAC sits behind the tunnel the frame came from, like "
                  "a learning switch, then hands the frame to br-int",
                  miss=None, learns_into=(t.UCAST_TO_TUN,)),
        TableDecl(t.UCAST_TO_TUN, t.UCAST_TO_TUN.name,
                  "sends a known unicast MAC down the one tunnel behind which it lives",
                  (t.FLOOD_TO_TUN,), miss=f"resubmit(,{t.FLOOD_TO_TUN})"),
        TableDecl(t.ARP_RESPONDER, t.ARP_RESPONDER.name,
                  "answers ARP requests for known VM addresses on the spot",
                  (t.FLOOD_TO_TUN,), miss=f"resubmit(,{t.FLOOD_TO_TUN})"),
        TableDecl(t.FLOOD_TO_TUN, t.FLOOD_TO_TUN.name,
                  "floods to every tunnel that carries the frame's network, with the "
                  "network's key"),
    ])  # fmt: skip


def _br_int() -> Pipeline:
    t = IntTable
    return _pipeline("br-int", [
        TableDecl(t.LOCAL_SWITCHING, t.LOCAL_SWITCHING.name,
                  "drops frames of unbound ports (dead VLAN 4095), turns a physical network's "
                  "VLAN into the local VLAN, sends what a port with port security sends to "
                  "table 24 (ARP, IPv6 neighbour advertisements) or 25 (the rest), passes the "
                  "rest on to table 60",
                  (t.ARP_SPOOF, t.MAC_SPOOF, t.TRANSIENT), miss=f"resubmit(,{t.TRANSIENT})"),
        TableDecl(t.CANARY, "CANARY_TABLE",
                  "holds one flow whose absence tells the agent the switch restarted"),
        TableDecl(t.ARP_SPOOF, "ARP_SPOOF_TABLE",
                  "port security: lets an ARP packet on to table 25 only when its sender IP "
                  "(arp_spa) is one of the sending port's fixed IPs or allowed address pairs, "
                  "an IPv6 neighbour advertisement only when its target (nd_target) is; drops "
                  "every other one (a spoofed or gratuitous claim to another's address)",
                  (t.MAC_SPOOF,)),
        TableDecl(t.MAC_SPOOF, "MAC_SPOOF_TABLE",
                  "port security: lets a frame on to table 60 only when its source MAC is the "
                  "sending port's (or an allowed address pair's) and, for IPv4 and IPv6, its "
                  "source IP is one the port owns with that MAC (or a DHCP request from "
                  "0.0.0.0); drops every other frame (a spoofed source), and DHCP server "
                  "replies and router advertisements from a VM",
                  (t.TRANSIENT,)),
        TableDecl(t.TRANSIENT, "TRANSIENT_TABLE",
                  "hands frames to NORMAL: MAC learning per local VLAN", miss="NORMAL"),
    ])  # fmt: skip


def _br_phys() -> Pipeline:
    t = PhysTable
    return _pipeline("br-phys", [
        TableDecl(t.LOCAL_SWITCHING, t.LOCAL_SWITCHING.name,
                  "turns a local VLAN from br-int into its provider VLAN (or no tag, for flat) "
                  "and drops the other local VLANs; hands the uplink's frames to NORMAL",
                  miss="NORMAL"),
    ])  # fmt: skip


BR_TUN: Final = br_tun_pipeline(tunnel_kinds_by_table())
BR_INT: Final = _br_int()
# a physical bridge has the operator's name (br-eth1); this is its declared pipeline
BR_PHYS: Final = _br_phys()

PIPELINES: Final[dict[str, Pipeline]] = {p.name: p for p in (BR_TUN, BR_INT)}
