"""The simulation's wires: a frame followed through bridges, patch ports and tunnels.

A frame enters at a vNIC of one hypervisor; each bridge decides with its real tables
(``Bridge`` translation without side effects, as ``ofproto/trace``: no counters, no learning);
each output is followed as the datapath would send it: across a patch port into the peer
bridge (metadata and tunnel fields cleared), into a tunnel to the hypervisor whose address is
the port's ``remote_ip`` and on there through *its* tunnel port back to the sender (the key
from the output's ``tun_id``, masked to 24 bits for VXLAN), or out of a vNIC to a VM. Every
copy ends somewhere, and the ending says where: delivered to which VM, or dropped by which
hypervisor, bridge and table, and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from tunnelnet.lab.sim_switch import SimPort, SimSwitch
from tunnelnet.packet.fields import VLAN_CFI, FlowKey, int_to_mac
from tunnelnet.switch import crossing
from tunnelnet.switch.flow_format import format_key
from tunnelnet.switch.match import KEY_DEFAULTS
from tunnelnet.switch.xlate import Xlate

MAX_DEPTH: Final = 16  # bridges one copy may pass in a row (a forwarding loop ends here, reported)
_MULTICAST_BIT: Final = 1 << 40
UPLINK_MARK: Final = "sim-physical-uplink"  # external_ids key of a physical uplink port

# endings that are not a VM's vNIC
DROPPED: Final = "dropped"
DELIVERED: Final = "delivered"


@dataclass(frozen=True, slots=True)
class Hop:
    """One bridge a copy of the frame went through."""

    hypervisor: str
    bridge: str
    in_port: str
    key: FlowKey

    def flow_text(self) -> str:
        return format_key(self.key)


@dataclass(frozen=True, slots=True)
class Ending:
    """Where one copy ended: at a VM's vNIC, or dropped (with the table that decided)."""

    kind: str  # DELIVERED | DROPPED
    hypervisor: str
    bridge: str
    port: str = ""  # the vNIC for a delivery
    vm: str = ""  # the VM behind that vNIC ("" when no VM is known there)
    table: int | None = None  # the table whose flow (or miss) dropped it
    reason: str = ""
    key: FlowKey = field(default_factory=dict, repr=False)
    path: tuple[Hop, ...] = field(default=(), repr=False)
    accepted: bool = False  # a VM takes a frame to its own MAC, or broadcast/multicast

    def describe(self) -> str:
        if self.kind == DELIVERED:
            who = self.vm or self.port
            if self.accepted:
                return f"delivered to {who} on {self.hypervisor}"
            mac = int_to_mac(self.key.get("dl_dst", 0))
            return f"reached {who} on {self.hypervisor}, whose NIC ignores it (not {mac})"
        table = f" table {self.table}" if self.table is not None else ""
        return f"dropped on {self.hypervisor} {self.bridge}{table}: {self.reason}"


@dataclass
class Walk:
    hops: list[Hop] = field(default_factory=list)
    endings: list[Ending] = field(default_factory=list)

    def delivered_to(self, vm: str) -> bool:
        return any(e.accepted and e.vm == vm for e in self.endings)

    def drops(self) -> list[Ending]:
        return [e for e in self.endings if e.kind == DROPPED]

    def summary(self) -> str:
        return "; ".join(e.describe() for e in self.endings) or "nothing happened"


VmAt = Callable[[str, SimPort], tuple[str, int] | None]
"""(hypervisor, vNIC port) -> (VM name, its MAC as int), or None."""


class SimFabric:
    def __init__(self, switches: Mapping[str, SimSwitch], vm_at: VmAt,
                 physical_vlans: frozenset[int] = frozenset()) -> None:
        self.switches = switches
        self.vm_at = vm_at
        # the physical switch behind the hypervisors' second uplinks carries untagged frames
        # and exactly these VLANs (its manual configuration, as the lab's vlan_filtering)
        self.physical_vlans = physical_vlans
        self._by_ip: dict[str, str] = {}

    def hypervisor_at(self, ip: str) -> SimSwitch | None:
        """The hypervisor whose underlay address is ``ip`` (the underlay's ARP, in short)."""
        if len(self._by_ip) != len(self.switches):
            self._by_ip = {sw.tunnel_ip: name for name, sw in self.switches.items()}
        return self.switches.get(self._by_ip.get(ip, ""))

    def send(self, hypervisor: str, port_name: str, key: FlowKey, *,
             keep_path: bool = False) -> Walk:
        """Follow a frame that ``port_name`` of ``hypervisor`` received, with flow ``key``
        (as :func:`tunnelnet.packet.flowkey.extract_flow_key` gives it)."""
        switch = self.switches[hypervisor]
        port = switch.ports.get(port_name)
        walk = Walk()
        if port is None:
            walk.endings.append(Ending(DROPPED, hypervisor, "", reason=f"no port {port_name}"))
            return walk
        start = dict(key)
        start["in_port"] = port.ofport
        self._bridge(walk, switch, port.bridge, port.name, start, (), keep_path, 1)
        return walk

    def _bridge(self, walk: Walk, switch: SimSwitch, bridge_name: str, in_port: str,
                key: FlowKey, path: tuple[Hop, ...], keep_path: bool, depth: int) -> None:
        hop = Hop(switch.hypervisor, bridge_name, in_port, key)
        walk.hops.append(hop)
        path = (*path, hop) if keep_path else path
        if depth > MAX_DEPTH:
            walk.endings.append(Ending(DROPPED, switch.hypervisor, bridge_name,
                                       reason=f"loop: more than {MAX_DEPTH} bridges in a row",
                                       path=path))
            return
        bridge = switch.bridge(bridge_name)
        x = Xlate(bridge, {**KEY_DEFAULTS, **key}, time.monotonic(), False, False)
        x.run_table(0)
        if x.error is not None or not x.outputs:
            table = x.drop_table
            if table is None:
                table = self._last_table(bridge_name, switch, key)
            walk.endings.append(Ending(DROPPED, switch.hypervisor, bridge_name, table=table,
                                       reason=x.error or x.drop_reason or "no output",
                                       key=key, path=path))
            return
        for out in x.outputs:
            port = switch.port_at(bridge_name, out.port)
            if port is None:
                walk.endings.append(Ending(DROPPED, switch.hypervisor, bridge_name,
                                           reason=f"output to missing port {out.port}",
                                           key=out.key, path=path))
            elif port.type == crossing.PATCH:
                self._patch(walk, switch, port, out.key, path, keep_path, depth)
            elif crossing.is_tunnel(port):
                self._tunnel(walk, switch, port, out.key, path, keep_path, depth)
            elif UPLINK_MARK in port.external_ids:
                self._physical(walk, switch, port, out.key, path, keep_path, depth)
            else:
                self._vnic(walk, switch, port, out.key, path)

    def _last_table(self, bridge_name: str, switch: SimSwitch, key: FlowKey) -> int | None:
        """The table where a frame that just produced no output ended (a NORMAL with
        nowhere to go has no drop flow to blame): found by tracing it once more."""
        trace = switch.bridge(bridge_name).trace(format_key({**KEY_DEFAULTS, **key}))
        return trace.steps[-1].table if trace.steps else None

    def _patch(self, walk: Walk, switch: SimSwitch, port: SimPort, key: FlowKey,
               path: tuple[Hop, ...], keep_path: bool, depth: int) -> None:
        peer = crossing.patch_peer(port, switch.ports.get)
        if peer is None:
            walk.endings.append(Ending(DROPPED, switch.hypervisor, port.bridge,
                                       reason=f"patch port {port.name} has no peer",
                                       key=key, path=path))
            return
        self._bridge(walk, switch, peer.bridge, peer.name, crossing.across_patch(key, peer.ofport),
                     path, keep_path, depth + 1)

    def _tunnel(self, walk: Walk, switch: SimSwitch, port: SimPort, key: FlowKey,
                path: tuple[Hop, ...], keep_path: bool, depth: int) -> None:
        hop = crossing.tunnel_hop(port, key.get("tun_id", 0), switch.tunnel_ip)
        target = self.hypervisor_at(hop.remote_ip)
        if target is None:
            walk.endings.append(Ending(DROPPED, switch.hypervisor, port.bridge,
                                       reason=f"underlay: no hypervisor at {hop.remote_ip}",
                                       key=key, path=path))
            return
        # the receiving datapath's demultiplexing, as a dict for the large simulations
        inbound = target.tunnels.get(hop.demux)
        if inbound is None:
            # the datapath's receive side: a frame from an address that is no tunnel peer
            walk.endings.append(Ending(
                DROPPED, target.hypervisor, "(tunnel)",
                reason=f"no {port.type} port for peer {hop.local_ip} (unknown tunnel peer)",
                key=key, path=path))
            return
        self._bridge(walk, target, inbound.bridge, inbound.name,
                     hop.arriving(key, inbound.ofport), path, keep_path, depth + 1)

    def _physical(self, walk: Walk, switch: SimSwitch, port: SimPort, key: FlowKey,
                  path: tuple[Hop, ...], keep_path: bool, depth: int) -> None:
        """The physical switch: floods the frame to every other hypervisor's uplink (a trace
        learns nothing), if it carries the frame's VLAN."""
        tci = key.get("vlan_tci", 0)
        if tci & VLAN_CFI and (tci & 0x0FFF) not in self.physical_vlans:
            walk.endings.append(Ending(
                DROPPED, switch.hypervisor, "(physical switch)",
                reason=f"VLAN {tci & 0x0FFF} is not configured on the physical switch",
                key=key, path=path))
            return
        frame = {f: key[f] for f in crossing.HEADER_FIELDS if f in key}
        for other in self.switches.values():
            if other is switch:
                continue
            uplink = next((p for p in other.ports.values()
                           if UPLINK_MARK in p.external_ids), None)
            if uplink is None:
                continue
            self._bridge(walk, other, uplink.bridge, uplink.name,
                         {**frame, "in_port": uplink.ofport}, path, keep_path, depth + 1)

    def _vnic(self, walk: Walk, switch: SimSwitch, port: SimPort, key: FlowKey,
              path: tuple[Hop, ...]) -> None:
        found = self.vm_at(switch.hypervisor, port)
        vm, mac = found if found is not None else ("", -1)
        dst = key.get("dl_dst", 0)
        accepted = found is not None and (dst == mac or bool(dst & _MULTICAST_BIT))
        walk.endings.append(Ending(DELIVERED, switch.hypervisor, port.bridge, port=port.name,
                                   vm=vm, key=key, path=path, accepted=accepted))
