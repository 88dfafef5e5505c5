"""Walk one packet from VM1's vNIC through every bridge it meets, asking each running switch.

At each bridge the switch's own trace (``ofproto/trace``'s lookup, no side effects) says which
flows match and where copies go. A patch port hands the frame to the peer bridge on the same
host; a tunnel port encapsulates it towards the hypervisor whose underlay address is the
port's remote_ip, where it enters that host's br-tun on the tunnel port pointing back. A vNIC
ends the walk. The only knowledge added here is Open vSwitch's port semantics (NORMAL tags a
frame from an access port with the port's VLAN on trunk ports and untags it on access ports),
which the switch's trace does not spell out per output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.tunnel import overhead, source_port
from tunnelnet.switch import crossing
from tunnelnet.trace import explain, flowtext
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.model import Encap, End, Exit, Journey, Outcome, Step, Visit
from tunnelnet.trace.probe import BROADCAST, Probe, build
from tunnelnet.trace.view import LabView, PortInfo, VmInfo

BRIDGES: Final = ("br-int", "br-tun")
MAX_VISITS: Final = 64  # a flood across a big lab stays bounded; a loop cannot run away


@dataclass(frozen=True, slots=True)
class _BridgePort:
    """A port and the bridge it is on (a journey's ports are listed per bridge)."""

    bridge: str
    port: PortInfo

    @property
    def name(self) -> str:
        return self.port.name

    @property
    def type(self) -> str:
        return self.port.type

    @property
    def options(self) -> dict[str, str]:
        return self.port.options


@dataclass(slots=True)
class _Pending:
    host: str
    bridge: str
    in_port: str
    flow: str
    parent: int | None
    frame: bytes  # the frame as it enters (untagged bytes; VLANs live in the flow text)


class Walker:
    def __init__(self, lab: LabView) -> None:
        self.lab = lab
        self.vms = lab.vms()
        self.networks = lab.networks()
        self.hv_ips = lab.hypervisors()
        self._ports: dict[tuple[str, str], list[PortInfo]] = {}

    def vm(self, name: str) -> VmInfo:
        try:
            return self.vms[name]
        except KeyError:
            raise TraceError(f"no VM named {name!r} in this lab "
                             f"(VMs: {', '.join(sorted(self.vms))})") from None

    def ports(self, host: str, bridge: str) -> list[PortInfo]:
        key = (host, bridge)
        if key not in self._ports:
            self._ports[key] = self.lab.switch(host).ports(bridge)
        return self._ports[key]

    def port(self, host: str, bridge: str, ofport: int) -> PortInfo | None:
        return next((p for p in self.ports(host, bridge) if p.ofport == ofport), None)

    def local_vlans(self, host: str) -> dict[int, str]:
        """Local VLAN id -> network name on ``host``, read from the tags on its VM ports."""
        taps = {v.tap: v.network for v in self.vms.values() if v.hypervisor == host}
        return {p.tag: taps[p.name] for p in self.ports(host, "br-int")
                if p.tag is not None and p.name in taps}

    # -- the walk -----------------------------------------------------------------------------

    def journey(self, src_name: str, dst_name: str, proto: str = "icmp",
                dport: int | None = None, marker: bytes | None = None,
                size: int | None = None) -> Journey:
        src, dst = self.vm(src_name), self.vm(dst_name)
        if src.name == dst.name:
            raise TraceError(f"source and destination are the same VM ({src.name})")
        probe = build(src, dst, proto, dport, marker, size)
        visits: list[Visit] = []
        encaps: list[Encap] = []
        ends: list[End] = []
        queue = [_Pending(src.hypervisor, "br-int", src.tap,
                          flowtext.entering(probe.flow, src.tap), None, probe.frame)]
        while queue:
            item = queue.pop(0)
            if len(visits) >= MAX_VISITS:
                ends.append(End(item.host, item.bridge, None, "lost",
                                f"the walk stopped after {MAX_VISITS} bridge visits"))
                break
            visits.append(self._visit(len(visits), item, src, dst, probe, encaps, ends, queue))
        if src.network != dst.network and dst.hypervisor not in {v.host for v in visits}:
            self._what_if(src, dst, probe, visits, encaps, ends)
        outcome = self._outcome(src, dst, probe, visits, encaps, ends)
        packet = probe.to_json()
        return Journey(src=_vm_json(src, self), dst=_vm_json(dst, self), packet=packet,
                       visits=visits, encaps=encaps, outcome=outcome)

    def _what_if(self, src: VmInfo, dst: VmInfo, probe: Probe, visits: list[Visit],
                 encaps: list[Encap], ends: list[End]) -> None:
        """The frame never reached the destination's hypervisor. Show from the attacker's side
        what that host would do if it did arrive there with the source network's key."""
        sent = [e for e in encaps if e.from_host == src.hypervisor]
        if not sent:
            return
        first = sent[0]
        host_ip = self.hv_ips.get(src.hypervisor, "")
        tunnels = [p for p in self.ports(dst.hypervisor, "br-tun")
                   if p.is_tunnel and p.options.get("remote_ip") == host_ip]
        port = next((p for p in tunnels if p.type == first.type), None) or \
            next(iter(tunnels), None)
        if port is None:
            ends.append(End(dst.hypervisor, "br-tun", None, "dropped",
                            f"what if it were sent to {dst.hypervisor} anyway: "
                            f"{dst.hypervisor} has no tunnel port from {src.hypervisor} "
                            f"({host_ip}); its vswitchd drops it as unknown_tunnel_peer before "
                            "any table", hypothetical=True))
            return
        tunnel = {"tun_id": hex(first.key), "tun_src": host_ip,
                  "tun_dst": self.hv_ips.get(dst.hypervisor, "")}
        flow = flowtext.with_vlan(flowtext.entering(probe.flow, port.name, tunnel=tunnel), None)
        before = len(ends)
        visit = self._visit(len(visits), _Pending(dst.hypervisor, "br-tun", port.name, flow,
                                                  None, probe.frame),
                            src, dst, probe, [], ends, [])
        visit.hypothetical = True
        visit.explanation = (f"What if {src.hypervisor} sent it to {dst.hypervisor} anyway, on "
                             f"{port.type} port {port.name} with key {first.key}? "
                             + visit.explanation)
        for end in ends[before:]:
            end.hypothetical = True
            end.reason = f"what if it reached {dst.hypervisor}: {end.reason}"
        visits.append(visit)

    def _visit(self, vid: int, item: _Pending, src: VmInfo, dst: VmInfo, probe: Probe,
               encaps: list[Encap], ends: list[End], queue: list[_Pending]) -> Visit:
        raw = self.lab.switch(item.host).trace(item.bridge, item.flow)
        steps = [Step(host=item.host, bridge=item.bridge, table=int(s["table"]),
                      priority=int(s["priority"]), match=str(s["match"]),
                      actions=str(s["actions"]), cookie=str(s.get("cookie", "")),
                      note=str(s.get("note", "")))
                 for s in raw["steps"]]
        visit = Visit(id=vid, host=item.host, bridge=item.bridge, in_port=item.in_port,
                      flow=str(raw["flow"]), steps=steps, exits=[], drop=bool(raw["drop"]),
                      drop_reason=raw.get("drop_reason"), final_flow=str(raw["final_flow"]),
                      parent=item.parent)
        in_port = next((p for p in self.ports(item.host, item.bridge)
                        if p.name == item.in_port), None)
        # the VLAN NORMAL switches the frame in: the access port's tag, or the trunk's 802.1Q
        vlan_in = in_port.tag if in_port is not None and in_port.tag is not None \
            else flowtext.vlan_of(item.flow)
        for ofport in raw["outputs"]:
            port = self.port(item.host, item.bridge, int(ofport))
            if port is None:
                visit.exits.append(Exit(str(ofport), int(ofport), "drop",
                                        note="no such port on the bridge"))
                continue
            self._exit(visit, port, vlan_in, item, src, dst, probe, encaps, ends, queue)
        if visit.drop or not raw["outputs"]:
            last = steps[-1] if steps else None
            ends.append(End(item.host, item.bridge, last.table if last else None, "dropped",
                            explain.drop_reason(item.bridge, last, visit.drop_reason)))
        explain.annotate(visit, self, src, dst)
        return visit

    def _exit(self, visit: Visit, port: PortInfo, vlan_in: int | None, item: _Pending,
              src: VmInfo, dst: VmInfo, probe: Probe, encaps: list[Encap], ends: list[End],
              queue: list[_Pending]) -> None:
        host, bridge = item.host, item.bridge
        final = visit.final_flow
        if bridge == "br-int":
            # NORMAL: trunk ports carry the local VLAN as 802.1Q, access ports none
            vlan = None if port.tag is not None else vlan_in
        else:
            vlan = flowtext.vlan_of(final)
        exit_ = Exit(port.name, port.ofport, "port", vlan=vlan)
        visit.exits.append(exit_)
        vm = next((v for v in self.vms.values()
                   if v.hypervisor == host and v.tap == port.name), None)
        if vm is not None:
            exit_.kind, exit_.vm = "vm", vm.name
            ends.append(_arrival(host, bridge, visit, vm, src, dst))
            return
        if port.type == crossing.PATCH:
            exit_.kind = "patch"
            found = crossing.patch_peer(port, lambda name: self._on_other_bridge(host, bridge,
                                                                                 name))
            if found is None:
                ends.append(End(host, bridge, None, "dropped",
                                f"patch port {port.name} has no peer "
                                f"{port.options.get('peer', '')!r} on this host"))
                return
            other, peer = found.bridge, found.port.name
            exit_.next_visit = -1  # filled in when the queue is drained (see _link)
            queue.append(_Pending(host, other, peer,
                                  flowtext.with_vlan(flowtext.entering(final, peer), vlan),
                                  visit.id, item.frame))
            return
        if port.is_tunnel:
            exit_.kind = "tunnel"
            self._tunnel(visit, exit_, port, item, final, vlan, encaps, ends, queue)
            return
        if port.type == "internal":
            ends.append(End(host, bridge, None, "flooded", f"a copy goes to the bridge's own "
                            f"internal port {port.name} (the host's stack; nothing there "
                            "wants it)"))
            return
        ends.append(End(host, bridge, None, "lost", f"left through {port.name} ({port.type}), "
                        "which leads to nothing this lab knows"))

    def _on_other_bridge(self, host: str, bridge: str, name: str) -> _BridgePort | None:
        """Port ``name`` on one of ``host``'s bridges other than ``bridge``."""
        return next((_BridgePort(b, p) for b in BRIDGES if b != bridge
                     for p in self.ports(host, b) if p.name == name), None)

    def _tunnel(self, visit: Visit, exit_: Exit, port: PortInfo, item: _Pending, final: str,
                vlan: int | None, encaps: list[Encap], ends: list[End],
                queue: list[_Pending]) -> None:
        host = item.host
        hop = crossing.tunnel_hop(port, int(flowtext.fields(final).get("tun_id", "0"), 0),
                                  self.hv_ips.get(host, ""))
        key, local_ip, remote_ip = hop.key, hop.local_ip, hop.remote_ip
        inner = _tagged(item.frame, vlan)
        over = overhead(port.type)
        mtu = port.underlay_mtu or 1500
        to_host = crossing.host_at(remote_ip, self.hv_ips)
        remote_port = None
        if to_host is not None:
            entry = hop.entry(self.ports(to_host, "br-tun"))
            remote_port = entry.name if entry is not None else None
        # our vswitchd's source port is predictable (RFC 7348 hash of the inner frame); a
        # switch that picks its own (Open vSwitch) leaves it open: udp_src None for a UDP kind
        ours = bool(getattr(self.lab.switch(host), "vxlan_source_port_is_ours", True))
        kind = tunnel_kinds.kind(port.type)
        udp = kind.transport is tunnel_kinds.Transport.UDP
        encap = Encap(type=port.type, from_host=host, to_host=to_host, tunnel_port=port.name,
                      remote_port=remote_port, outer_src=local_ip, outer_dst=remote_ip, key=key,
                      udp_src=source_port(inner) if udp and ours else None,
                      udp_dst=int(port.options.get("dst_port", kind.number)) if udp else None,
                      inner_length=len(inner), outer_ip_length=len(inner) + over - 14,
                      outer_frame_length=len(inner) + over, underlay_mtu=mtu,
                      fits=len(inner) + over - 14 <= mtu)
        explain.annotate_encap(encap, self)
        exit_.encap = len(encaps)
        encaps.append(encap)
        if not encap.fits:
            ends.append(End(host, item.bridge, None, "dropped", f"the encapsulated packet "
                            f"({encap.outer_ip_length} bytes of IP) exceeds the underlay MTU "
                            f"{mtu}: vswitchd counts it as mtu_exceeded and it never leaves "
                            f"{host}"))
            return
        if to_host is None:
            ends.append(End(host, item.bridge, None, "lost", f"{remote_ip} is no hypervisor "
                            "of this lab"))
            return
        if remote_port is None:
            ends.append(End(to_host, "br-tun", None, "dropped", f"{to_host} has no "
                            f"{port.type} tunnel port from {local_ip}: its vswitchd drops the "
                            "packet as unknown_tunnel_peer"))
            return
        exit_.next_visit = -1
        tunnel = {"tun_id": hex(key), "tun_src": local_ip, "tun_dst": remote_ip}
        flow = flowtext.with_vlan(flowtext.entering(final, remote_port, tunnel=tunnel), vlan)
        queue.append(_Pending(to_host, "br-tun", remote_port, flow, visit.id, inner))

    def _outcome(self, src: VmInfo, dst: VmInfo, probe: Probe, visits: list[Visit],
                 encaps: list[Encap], ends: list[End]) -> Outcome:
        _link(visits)
        outcome = Outcome(delivered=any(e.what in ("delivered", "answered") and e.vm in
                                        (dst.name, src.name) and not e.hypothetical
                                        for e in ends),
                          summary="", reached_tunnel=bool(encaps), ends=ends)
        outcome.summary = explain.summary(outcome, src, dst, probe, visits, encaps, self)
        return outcome


def _link(visits: list[Visit]) -> None:
    """Point each patch/tunnel exit at the visit it led to (children are queued in order)."""
    children: dict[int, list[int]] = {}
    for v in visits:
        if v.parent is not None:
            children.setdefault(v.parent, []).append(v.id)
    for v in visits:
        kids = children.get(v.id, [])
        for exit_ in v.exits:
            if exit_.next_visit == -1:
                exit_.next_visit = kids.pop(0) if kids else None


def _tagged(frame: bytes, vlan: int | None) -> bytes:
    if vlan is None:
        return frame
    return frame[:12] + b"\x81\x00" + vlan.to_bytes(2, "big") + frame[12:]


def _arrival(host: str, bridge: str, visit: Visit, vm: VmInfo, src: VmInfo,
             dst: VmInfo) -> End:
    f = flowtext.fields(visit.final_flow)
    dl_dst = f.get("dl_dst", "").lower()
    if vm.name == dst.name and dl_dst in (vm.mac, BROADCAST):
        return End(host, bridge, None, "delivered", f"out of {vm.tap}, {vm.name}'s vNIC", vm.name)
    if vm.name == src.name and f.get("arp_op") == "2":
        return End(host, bridge, None, "answered", f"an ARP reply comes back to {vm.name} "
                   f"saying {f.get('arp_spa')} is at {f.get('arp_sha')}", vm.name)
    if dl_dst in (vm.mac, BROADCAST):
        return End(host, bridge, None, "flooded", f"a copy reaches {vm.name} ({vm.tap}), "
                   "which is not the destination", vm.name)
    return End(host, bridge, None, "discarded", f"a copy reaches {vm.name}'s vNIC ({vm.tap}); "
               f"the frame is addressed to {dl_dst}, not {vm.mac}, so its NIC discards it",
               vm.name)


def _vm_json(vm: VmInfo, walker: Walker) -> dict[str, Any]:
    net = walker.networks.get(vm.network)
    return {"name": vm.name, "tenant": vm.tenant, "network": vm.network,
            "hypervisor": vm.hypervisor, "mac": vm.mac, "ip": vm.ip, "port": vm.tap,
            "network_type": net.type if net else None,
            "segment": net.segment if net else None}


def trace(lab: LabView, src: str, dst: str, proto: str = "icmp", dport: int | None = None,
          marker: bytes | None = None, size: int | None = None) -> Journey:
    return Walker(lab).journey(src, dst, proto, dport, marker, size)
