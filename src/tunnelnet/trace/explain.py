"""Plain words for a journey (``--explain``): what each bridge and table is for and did.

Table names and purposes come from the declared pipelines (``tunnelnet.switch.pipeline``), the
records the agent builds its flows from, so the words and the flows are written down in one
place. The local VLAN, the
VLAN-to-key translation, the flood list and table 10's learning are named as such.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tunnelnet.packet import pmtu, tunnel_kinds
from tunnelnet.switch.pipeline import PIPELINES, TableDecl, TunPriority, TunTable
from tunnelnet.trace import flowtext
from tunnelnet.trace.model import Encap, Outcome, Step, Visit
from tunnelnet.trace.probe import Probe
from tunnelnet.trace.view import PortInfo, VmInfo

if TYPE_CHECKING:
    from tunnelnet.trace.journey import Walker

_TUN_ID = re.compile(r"(?:set_tunnel:|load:)(0x[0-9a-f]+)(?:->NXM_NX_TUN_ID\[\])?")


def spec(bridge: str, table: int) -> TableDecl | None:
    """The declared record of a bridge's table; None for a bridge or table not declared."""
    pipeline = PIPELINES.get(bridge)
    return pipeline.describe(table) if pipeline else None


def _net_words(walker: Walker, network: str | None) -> str:
    if network is None:
        return "no network of this host"
    net = walker.networks.get(network)
    if net is None:
        return f"network {network}"
    return f"network {network} of tenant {net.tenant} ({net.type} {net.segment})"


def _step_words(step: Step, visit: Visit, walker: Walker) -> str:
    s = spec(visit.bridge, step.table)
    head = f"table {step.table} ({s.name}) {s.purpose}. " if s else f"table {step.table}: "
    vlans = walker.local_vlans(visit.host)
    extra = ""
    if visit.bridge == "br-tun":
        tun = _TUN_ID.search(step.actions)
        vlan = flowtext.vlan_of(visit.flow)
        to_tunnel = step.table in (TunTable.UCAST_TO_TUN, TunTable.FLOOD_TO_TUN)
        if to_tunnel and tun and ("strip_vlan" in step.actions or "VLAN_TCI" in step.actions):
            key = int(tun.group(1), 16)
            extra = (f"VLAN-to-key translation: local VLAN {vlan} "
                     f"({_net_words(walker, vlans.get(vlan) if vlan else None)}) leaves this "
                     f"host as tunnel key {key}. ")
            if step.table == TunTable.FLOOD_TO_TUN:
                outs = re.findall(r"output:(\d+)", step.actions)
                names = []
                for o in outs:
                    p = walker.port(visit.host, "br-tun", int(o))
                    if p is not None:
                        peer = next((h for h, ip in walker.hv_ips.items()
                                     if ip == p.options.get("remote_ip")), "?")
                        names.append(f"{p.name} to {peer}")
                extra += (f"This is the network's flood list: every tunnel to a hypervisor "
                          f"that has ports on it ({', '.join(names) or 'none'}). ")
        if tunnel_kinds.by_table(step.table) is not None and "mod_vlan_vid" in step.actions:
            m = re.search(r"mod_vlan_vid:(\d+)", step.actions)
            lv = int(m.group(1)) if m else None
            extra = (f"Key-to-VLAN translation: the tunnel key becomes this host's local VLAN "
                     f"{lv} ({_net_words(walker, vlans.get(lv) if lv else None)}). ")
        if step.table == TunTable.LEARN_FROM_TUN:
            extra = (f"Table {step.table} is a learning switch for the tunnels: it writes a flow "
                     f"into table {TunTable.UCAST_TO_TUN} saying the source MAC lives behind the "
                     "tunnel the frame came from, so replies go straight there instead of being "
                     "flooded. ")
        if step.table == TunTable.UCAST_TO_TUN and step.priority == TunPriority.DEFAULT:
            extra = ("No flow knows the destination MAC on this VLAN (no l2population entry, "
                     "nothing learned): unknown unicast is flooded like a broadcast. ")
    elif visit.bridge == "br-int" and "NORMAL" in step.actions:
        port = next((p for p in walker.ports(visit.host, "br-int")
                     if p.name == visit.in_port), None)
        vlan = port.tag if port is not None and port.tag is not None \
            else flowtext.vlan_of(visit.flow)
        extra = (f"The NORMAL switch works per local VLAN: this frame is on local VLAN {vlan}, "
                 f"this host's VLAN for {_net_words(walker, vlans.get(vlan) if vlan else None)}"
                 ". It only ever reaches ports of that VLAN. ")
    if step.priority < 0:
        # no flow at all, not even the table's catch-all: a fail-secure switch drops it
        extra += "No flow matched: drop. "
    return (head + extra + (step.note or "")).strip()


def annotate(visit: Visit, walker: Walker, src: VmInfo, dst: VmInfo) -> None:
    port = next((p for p in walker.ports(visit.host, visit.bridge)
                 if p.name == visit.in_port), None)
    vm = walker.vm_at.get((visit.host, visit.in_port))
    if vm is not None and port is not None:
        came = (f"from VM {vm.name}'s vNIC {port.name}, an access port of local VLAN "
                f"{port.tag} (this host's VLAN for {_net_words(walker, vm.network)})")
    elif port is not None and port.type == "patch":
        came = f"over the patch port {port.name} from {port.options.get('peer')}"
    elif port is not None and port.is_tunnel:
        peer = next((h for h, ip in walker.hv_ips.items()
                     if ip == port.options.get("remote_ip")), port.options.get("remote_ip"))
        came = f"from the underlay, decapsulated by {port.type} tunnel port {port.name} ({peer})"
    else:
        came = f"on port {visit.in_port}"
    visit.explanation = f"{visit.host} {visit.bridge}: the frame enters {came}."
    for step in visit.steps:
        step.explanation = _step_words(step, visit, walker)


def annotate_encap(encap: Encap, walker: Walker) -> None:
    entry = tunnel_kinds.kind(encap.type)
    if entry.transport is not tunnel_kinds.Transport.UDP:
        kind = f"{entry.title} {entry.key_name}"
        port = f", IP protocol {entry.number} ({entry.spec}, with key)"
    elif encap.udp_src is None:
        kind = entry.key_name
        port = (f", UDP to {encap.udp_dst} from a source port this switch picks by its own "
                "hash of the inner flow (Open vSwitch: 32768-61000)")
    else:
        kind = entry.key_name
        # RFC 7348 section 5 asks for it; RFC 8926 section 3.3 asks Geneve the same
        port = (f", UDP source port {encap.udp_src} ({entry.spec}: a hash of the inner frame's "
                f"addresses and ports, so one flow keeps one underlay path) to {encap.udp_dst}")
    fits = (f"fits the underlay MTU {encap.underlay_mtu}" if encap.fits
            else f"EXCEEDS the underlay MTU {encap.underlay_mtu} (the tunnel's IP MTU for the "
            f"VM is {mtu_words(encap)}): {encap.oversize}")
    encap.explanation = (
        f"{encap.from_host} wraps the {encap.inner_length}-byte frame in {entry.title}: "
        f"outer IPv4 {encap.outer_src} -> {encap.outer_dst} ({encap.to_host or 'unknown'}), "
        f"{kind} {encap.key}{port}; outer IP packet {encap.outer_ip_length} bytes, "
        f"frame {encap.outer_frame_length} bytes: {fits}.")


def tunnel_liveness(port: PortInfo, far_end: str) -> str:
    """What the tunnel's BFD session says when it is not up ("" when up, or without BFD)."""
    state = port.liveness.get("state")
    if not state or state == "up":
        return ""
    since = port.liveness.get("since_change_s")
    how_long = f" for {since:.0f} s" if isinstance(since, int | float) else ""
    why = port.liveness.get("diagnostic")
    return (f"the tunnel to {far_end} has been {state}{how_long}"
            + (f" (BFD: {why})" if why else "")
            + ": what it carries is likely lost, and the agent keeps it out of flooding")


# what became of a frame too big for its tunnel, in the trace's summary ({} is the VM's MTU)
_OVERSIZE_SUMMARY = {
    pmtu.Oversize.FRAG_NEEDED.value: "vswitchd tells the sender with ICMP 'fragmentation "
                                     "needed' (mtu {})",
    pmtu.Oversize.PACKET_TOO_BIG.value: "vswitchd tells the sender with ICMPv6 'packet too "
                                        "big' (mtu {})",
    pmtu.Oversize.FRAGMENTED.value: "vswitchd sends it on as IPv4 fragments of at most {} "
                                    "bytes",
    pmtu.Oversize.EXCEEDED.value: "vswitchd drops it and counts it as mtu_exceeded",
    "dropped silently": "the switch drops it without telling the sender",
}


def _oversize_summary(encap: Encap) -> str:
    words = _OVERSIZE_SUMMARY.get(encap.oversize or "", "{}").format(encap.vm_mtu)
    if encap.doctor is not None:  # Open vSwitch: the agent's MTU doctor, not vswitchd
        words = words.replace("vswitchd", "the agent's MTU doctor", 1)
    return words


def mtu_words(encap: Encap) -> str:
    """Why the tunnel's MTU is what it is: "1450 = underlay MTU 1500 - 50 (outer IPv4 20 +
    UDP 8 + VXLAN 8 + inner Ethernet 14)"."""
    entry = tunnel_kinds.kind(encap.type)
    parts = " + ".join(f"{what} {size}" for what, size in entry.mtu_parts)
    return (f"{encap.vm_mtu} = underlay MTU {encap.underlay_mtu} - {entry.overhead} "
            f"({parts})")


def oversize_words(encap: Encap, verdict: pmtu.Answer, switch: object) -> str:
    """The end of a frame too big for its tunnel, and why: the MTU, then what the switch
    does (our vswitchd: packet/pmtu.py's verdict; Open vSwitch: nothing)."""
    head = (f"the encapsulated packet ({encap.outer_ip_length} bytes of IP) exceeds the "
            f"underlay MTU {encap.underlay_mtu}: the {tunnel_kinds.kind(encap.type).title} "
            f"tunnel leaves the VM an IP MTU of {mtu_words(encap)}")
    if encap.doctor is not None:
        who = getattr(switch, "product", "the switch")
        return (f"{head}; {who} on {encap.from_host} finds it larger than {encap.doctor} "
                f"bytes (br-tun's check_pkt_larger) and sends it to the agent, whose MTU "
                f"doctor does as vswitchd would: {verdict.why} (counted as "
                f"{verdict.what.value} in the agent's mtu-doctor.json)")
    if encap.oversize == "dropped silently":
        who = getattr(switch, "product", "the switch")
        return (f"{head}; {who} on {encap.from_host} drops it without "
                "telling the sender (no ICMP: a black hole for path MTU discovery)")
    if verdict.what is pmtu.Oversize.FRAGMENTED:
        return (f"{head}; vswitchd sends it on as {len(verdict.fragments)} IPv4 fragments "
                f"(counted as {verdict.what.value}), which the destination reassembles")
    return f"{head}; vswitchd: {verdict.why} (counted as {verdict.what.value})"


def drop_reason(bridge: str, step: Step | None, reason: str | None) -> str:
    if step is None:
        return f"{bridge} has no flow for it ({reason or 'no flow'})"
    s = spec(bridge, step.table)
    purpose = f" ({s.name}: {s.purpose})" if s else ""
    if step.priority < 0:
        return f"table {step.table}{purpose} has no flow for it and drops it"
    match = step.match or "every packet"
    return (f"table {step.table}{purpose} drops it: flow priority={step.priority},{match} "
            f"actions={step.actions}")


def vm_mtu_words(src: VmInfo, probe: Probe, walker: Walker) -> str:
    """When the probe is bigger than the source VM's MTU: that a VM would not send it so, and
    why its network's MTU is what it is (the tunnel's overhead, as Neutron counts it)."""
    ip_length = len(probe.frame) - 14  # the Ethernet header is no part of the VM's MTU
    if probe.proto == "arp" or ip_length <= src.mtu:
        return ""
    words = (f"{src.name}'s MTU is {src.mtu}, so a VM would not send these {ip_length} bytes "
             "of IP in one packet (its IP stack fragments them, or with DF set, as "
             "'ping -M do' asks, refuses: 'message too long'); the trace follows the packet "
             "as if it had")
    net = walker.networks.get(src.network)
    entry = tunnel_kinds.find(net.type) if net is not None else None
    if entry is not None:
        underlay = src.mtu + entry.overhead
        words += (f". {src.network}'s MTU is {src.mtu} because the underlay's IP MTU "
                  f"{underlay} must also hold what {entry.title} adds: {entry.mtu_sum} bytes")
    return words


def summary(outcome: Outcome, src: VmInfo, dst: VmInfo, probe: Probe, visits: list[Visit],
            encaps: list[Encap], walker: Walker) -> str:
    hosts = sorted({v.host for v in visits if not v.hypothetical})
    parts: list[str] = []
    delivered = [e for e in outcome.ends if e.what == "delivered" and e.vm == dst.name]
    answered = [e for e in outcome.ends if e.what == "answered"]
    if answered:
        where = answered[0]
        parts.append(f"{probe.summary}: answered on {where.host} by br-tun's ARP responder "
                     f"(table {TunTable.ARP_RESPONDER}); {where.reason}")
    elif delivered:
        parts.append(f"{probe.summary}: delivered to {dst.name} on {dst.hypervisor}")
    else:
        parts.append(f"{probe.summary}: NOT delivered to {dst.name}")
    crossed = [e for e in encaps if e.fits]
    physical = [e for v in visits if not v.hypothetical for e in v.exits
                if e.kind == "physical"]
    if not encaps and physical:
        parts.append(f"it crossed the physical network from {src.hypervisor}'s "
                     f"{physical[0].port} as 802.1Q VLAN {physical[0].vlan}"
                     if physical[0].vlan is not None else
                     f"it crossed the physical network untagged from {src.hypervisor}'s "
                     f"{physical[0].port}")
        parts[-1] += f" (hosts visited: {', '.join(hosts)})"
    elif not encaps and len(hosts) > 1:
        parts.append(f"hosts visited: {', '.join(hosts)}")
    elif not encaps:
        parts.append(f"it stayed on {src.hypervisor}'s br-int and never reached a tunnel")
    elif crossed:
        keys = sorted({(e.type, e.key) for e in crossed})
        parts.append("it crossed the underlay as " + ", ".join(
            f"{tunnel_kinds.kind(t).title} {tunnel_kinds.kind(t).key_name} {k}"
            for t, k in keys)
            + f" (hosts visited: {', '.join(hosts)})")
    else:
        big = encaps[0]
        entry = tunnel_kinds.kind(big.type)
        parts.append(f"it never left {big.from_host}: wrapped in {entry.title} it is "
                     f"{big.outer_ip_length} bytes of IP, more than the underlay's MTU "
                     f"{big.underlay_mtu}; {_oversize_summary(big)}")
    mtu = vm_mtu_words(src, probe, walker)
    if mtu:
        parts.append(mtu)
    if src.network != dst.network:
        dnet = walker.networks.get(dst.network)
        seg = f" ({dnet.type} {dnet.segment})" if dnet else ""
        parts.append(f"{dst.name} is on {dst.network}{seg}, another network than "
                     f"{src.name}'s {src.network}: a frame only travels with its own "
                     "network's key and local VLAN, so it cannot get there")
    drops = [e for e in outcome.ends if e.what == "dropped"]
    for e in drops[:3]:
        parts.append(e.reason if e.hypothetical else f"dropped on {e.host} {e.bridge}: {e.reason}")
    return "; ".join(parts) + "."
