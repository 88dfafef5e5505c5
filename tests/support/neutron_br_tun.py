"""The flow table Neutron's Open vSwitch agent programs into br-tun, as ovs-ofctl text.

Fixture data for the differential tests: the same text is loaded into Open vSwitch and into our
switch. Written from reading Neutron (plugins/ml2/drivers/openvswitch/agent: common/constants.py
for the table numbers and the ARP responder actions, openflow/native/br_tun.py for priorities and
matches, openflow/ovs_ofctl/br_tun.py for the text forms of the actions); our own code, and
independent of tunnelnet's agent, so that it can serve as a second opinion about it.

The pipeline (table: purpose):
  0  classify by in_port: patch-int -> 2, a tunnel port -> 3 (GRE) / 4 (VXLAN) / 6 (Geneve)
  2  from br-int: ARP broadcast -> 21 (with the ARP responder), unicast -> 20, flood -> 22
  3/4/6  tunnel key -> local VLAN (mod_vlan_vid), then -> 10; unknown key: drop
  10 learn "this MAC is behind that tunnel" into table 20, and send to patch-int
  20 known unicast (l2population, priority 2; learned, priority 1) -> one tunnel; else -> 22
  21 ARP responder: answer from the table, back out of in_port; else -> 22
  22 flood to the network's tunnels with its key; unknown local VLAN: drop

Neutron puts its agent cookie on every flow and on what learn() creates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

# Table numbers, by Neutron's names (common/constants.py).
PATCH_LV_TO_TUN: Final = 2
GRE_TUN_TO_LV: Final = 3
VXLAN_TUN_TO_LV: Final = 4
GENEVE_TUN_TO_LV: Final = 6
LEARN_FROM_TUN: Final = 10
UCAST_TO_TUN: Final = 20
ARP_RESPONDER: Final = 21
FLOOD_TO_TUN: Final = 22

TUN_TABLE: Final[dict[str, int]] = {
    "gre": GRE_TUN_TO_LV,
    "vxlan": VXLAN_TUN_TO_LV,
    "geneve": GENEVE_TUN_TO_LV,
}

DEFAULT_COOKIE: Final = 0x9E3779B97F4A7C15  # any 64-bit value; Neutron draws one per agent run
LEARNED_HARD_TIMEOUT: Final = 300


@dataclass(frozen=True)
class Network:
    """A tenant network present on this host: its segment and the local VLAN it got here."""

    kind: str  # "vxlan", "gre" or "geneve"
    segment: int  # VNI (24 bits) or GRE key (32 bits)
    local_vlan: int  # 1..4094
    # Peers (by remote IP) to flood to. None: every tunnel of the network's type (no
    # l2population, the full-mesh behaviour); with l2population only peers that have ports.
    flood_to: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in TUN_TABLE:
            raise ValueError(f"network type {self.kind!r} is not a tunnel type")
        if not 1 <= self.local_vlan <= 4094:
            raise ValueError(f"local VLAN {self.local_vlan} outside 1..4094")


@dataclass(frozen=True)
class Peer:
    """A tunnel to another hypervisor: one br-tun port per (type, remote IP)."""

    kind: str
    remote_ip: str
    ofport: int

    @property
    def port_name(self) -> str:
        return tunnel_port_name(self.kind, self.remote_ip)


@dataclass(frozen=True)
class RemotePort:
    """A VM port on another host, as l2population announces it (MAC, IP, which host)."""

    segment: int
    mac: str
    ip: str
    remote_ip: str  # the hypervisor it lives on


@dataclass(frozen=True)
class BrTunHost:
    patch_int_ofport: int
    networks: Sequence[Network]
    peers: Sequence[Peer]
    remote_ports: Sequence[RemotePort] = ()
    l2pop: bool = False  # install table-20 unicast flows for remote_ports
    arp_responder: bool = False  # install table 21 (needs l2pop's knowledge of IPs)
    cookie: int = DEFAULT_COOKIE
    tunnel_types: tuple[str, ...] = field(default=("gre", "vxlan", "geneve"))

    def network(self, segment: int) -> Network:
        for net in self.networks:
            if net.segment == segment:
                return net
        raise KeyError(f"no network with segment {segment}")

    def peer(self, kind: str, remote_ip: str) -> Peer:
        for peer in self.peers:
            if peer.kind == kind and peer.remote_ip == remote_ip:
                return peer
        raise KeyError(f"no {kind} tunnel to {remote_ip}")

    def flood_ports(self, net: Network) -> list[int]:
        peers = [p for p in self.peers if p.kind == net.kind]
        if net.flood_to is not None:
            peers = [p for p in peers if p.remote_ip in net.flood_to]
        return [p.ofport for p in peers]


def tunnel_port_name(kind: str, remote_ip: str) -> str:
    """Neutron's name for a tunnel port: type, '-', the remote IPv4 address in hex."""
    return f"{kind}-{int(ipaddress.IPv4Address(remote_ip)):08x}"


def _flow(cookie: int, table: int, priority: int, match: str, actions: str) -> str:
    parts = [f"cookie={cookie:#x}", f"table={table}", f"priority={priority}"]
    if match:
        parts.append(match)
    return ",".join(parts) + f" actions={actions}"


def default_flows(host: BrTunHost) -> list[str]:
    """setup_default_table(): the skeleton present before any network or peer."""
    c = host.cookie
    flows = [
        _flow(c, 0, 1, f"in_port={host.patch_int_ofport}", f"resubmit(,{PATCH_LV_TO_TUN})"),
        _flow(c, 0, 0, "", "drop"),
    ]
    if host.arp_responder:
        flows.append(
            _flow(
                c,
                PATCH_LV_TO_TUN,
                1,
                "arp,dl_dst=ff:ff:ff:ff:ff:ff",
                f"resubmit(,{ARP_RESPONDER})",
            )
        )
    flows += [
        _flow(
            c,
            PATCH_LV_TO_TUN,
            0,
            "dl_dst=00:00:00:00:00:00/01:00:00:00:00:00",
            f"resubmit(,{UCAST_TO_TUN})",
        ),
        _flow(
            c,
            PATCH_LV_TO_TUN,
            0,
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
            f"resubmit(,{FLOOD_TO_TUN})",
        ),
    ]
    flows += [_flow(c, TUN_TABLE[kind], 0, "", "drop") for kind in host.tunnel_types]
    # Remember the source MAC of a frame from a tunnel as reachable through that tunnel, in
    # that network: a flow in table 20 matching (local VLAN, dst MAC), which strips the VLAN,
    # sets the frame's own tunnel key and outputs to the tunnel port it came in on.
    learn = (
        f"learn(cookie={c:#x},table={UCAST_TO_TUN},priority=1,"
        f"hard_timeout={LEARNED_HARD_TIMEOUT},"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
        "output:NXM_OF_IN_PORT[])"
    )
    flows.append(_flow(c, LEARN_FROM_TUN, 1, "", f"{learn},output:{host.patch_int_ofport}"))
    flows.append(_flow(c, UCAST_TO_TUN, 0, "", f"resubmit(,{FLOOD_TO_TUN})"))
    if host.arp_responder:
        flows.append(_flow(c, ARP_RESPONDER, 0, "", f"resubmit(,{FLOOD_TO_TUN})"))
    flows.append(_flow(c, FLOOD_TO_TUN, 0, "", "drop"))
    return flows


def tunnel_port_flows(host: BrTunHost) -> list[str]:
    """setup_tunnel_port(): frames from a tunnel go to that tunnel type's key table."""
    return [
        _flow(host.cookie, 0, 1, f"in_port={p.ofport}", f"resubmit(,{TUN_TABLE[p.kind]})")
        for p in host.peers
    ]


def network_flows(host: BrTunHost) -> list[str]:
    """provision_local_vlan() and install_flood_to_tun() for each network."""
    c = host.cookie
    flows: list[str] = []
    for net in host.networks:
        flows.append(
            _flow(
                c,
                TUN_TABLE[net.kind],
                1,
                f"tun_id={net.segment:#x}",
                f"mod_vlan_vid:{net.local_vlan},resubmit(,{LEARN_FROM_TUN})",
            )
        )
        ports = host.flood_ports(net)
        if ports:
            outputs = ",".join(f"output:{p}" for p in ports)
            flows.append(
                _flow(
                    c,
                    FLOOD_TO_TUN,
                    1,
                    f"dl_vlan={net.local_vlan}",
                    f"strip_vlan,set_tunnel:{net.segment:#x},{outputs}",
                )
            )
    return flows


def l2pop_flows(host: BrTunHost) -> list[str]:
    """install_unicast_to_tun() for each remote port l2population told us about."""
    if not host.l2pop:
        return []
    flows: list[str] = []
    for rp in host.remote_ports:
        net = host.network(rp.segment)
        peer = host.peer(net.kind, rp.remote_ip)
        flows.append(
            _flow(
                host.cookie,
                UCAST_TO_TUN,
                2,
                f"dl_vlan={net.local_vlan},dl_dst={rp.mac}",
                f"strip_vlan,set_tunnel:{net.segment:#x},output:{peer.ofport}",
            )
        )
    return flows


def arp_responder_flows(host: BrTunHost) -> list[str]:
    """install_arp_responder(): turn the ARP request into the reply and send it back.

    Same steps as Neutron's ARP_RESPONDER_ACTIONS: the requester becomes the destination, the
    answer's MAC the source, op = 2 (reply), sender fields move to target fields, and the
    known MAC/IP become the sender; then out of the port the request came in on.
    """
    if not host.arp_responder:
        return []
    flows: list[str] = []
    for rp in host.remote_ports:
        net = host.network(rp.segment)
        mac_hex = int(rp.mac.replace(":", ""), 16)
        ip_hex = int(ipaddress.IPv4Address(rp.ip))
        actions = ",".join(
            [
                "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
                f"mod_dl_src:{rp.mac}",
                "load:0x2->NXM_OF_ARP_OP[]",
                "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]",
                "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
                f"load:{mac_hex:#x}->NXM_NX_ARP_SHA[]",
                f"load:{ip_hex:#x}->NXM_OF_ARP_SPA[]",
                "in_port",
            ]
        )
        flows.append(
            _flow(
                host.cookie,
                ARP_RESPONDER,
                1,
                f"arp,dl_vlan={net.local_vlan},arp_tpa={rp.ip}",
                actions,
            )
        )
    return flows


def br_tun_flows(host: BrTunHost) -> list[str]:
    """Every flow of br-tun for this host, in the order the agent would install them."""
    return [
        *default_flows(host),
        *tunnel_port_flows(host),
        *network_flows(host),
        *l2pop_flows(host),
        *arp_responder_flows(host),
    ]
