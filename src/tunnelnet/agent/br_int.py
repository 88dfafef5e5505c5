"""Flows of the integration bridge br-int.

br-int switches with NORMAL inside each local VLAN; its flows keep unbound ports dead, keep
each VM port to its own addresses (port security, tables 24 and 25) and mark the bridge so a
restart of the switch can be noticed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.switch.pipeline import IntPriority, IntTable


def default_flows() -> list[FlowMod]:
    return [
        # a frame already on the dead VLAN (from a trunk) is never switched
        FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.DEAD_VLAN, f"dl_vlan={DEAD_VLAN}",
                "drop"),
        FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.DEFAULT, "",
                f"resubmit(,{IntTable.TRANSIENT})"),
        FlowMod(IntTable.CANARY, IntPriority.DEFAULT, "", "drop"),
        # port security: what no allow flow of a protected port matched (Neutron installs
        # the drop in 24; 25's is written out too, so its drops are counted in a flow)
        FlowMod(IntTable.ARP_SPOOF, IntPriority.DEFAULT, "", "drop"),
        FlowMod(IntTable.MAC_SPOOF, IntPriority.DEFAULT, "", "drop"),
        FlowMod(IntTable.TRANSIENT, IntPriority.NORMAL, "", "NORMAL"),
    ]


def _port_match(ofport: int) -> str:
    return f"in_port={ofport}"


def dead_port(ofport: int) -> FlowMod:
    """A vNIC whose controller port is unknown sends nothing (it also sits on VLAN 4095)."""
    return FlowMod(IntTable.LOCAL_SWITCHING, IntPriority.PORT_DROP, _port_match(ofport), "drop")


# -- port security (Neutron's ARP spoofing protection, tables 24 and 25) --------------------

# Neutron leaves ports the cloud itself owns (DHCP, routers: device_owner "network:...")
# unprotected: they answer for addresses that are not theirs by design.
NETWORK_OWNER_PREFIX = "network:"
# RFC 2131 section 4.1: a client with no address yet sends from 0.0.0.0 to the broadcast
# address, UDP 68 -> 67; Neutron's firewall lets exactly that through before any address.
_DHCP_REQUEST = "udp,nw_src=0.0.0.0,nw_dst=255.255.255.255,tp_src=68,tp_dst=67"
_SERVICES = ("udp,{port},tp_src=67,tp_dst=68", "udp6,{port},tp_src=547,tp_dst=546",
             "icmp6,{port},icmp_type=134")
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/64")
_ND_ADVERT = 136  # ICMPv6 neighbour advertisement (RFC 4861 section 4.4)
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Owned:
    """What a protected port may send from: its own MAC with its fixed IPs, and each allowed
    address pair's address (an address or a CIDR) with the pair's MAC."""

    mac: str
    fixed_ips: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()  # (ip or cidr, mac)

    def macs(self) -> list[str]:
        return sorted({self.mac, *(mac for _, mac in self.pairs)})

    def sources(self) -> list[tuple[str, IpNet]]:
        """(MAC, network) pairs an IP packet may come from."""
        found = {(self.mac, ipaddress.ip_network(ip, strict=False)) for ip in self.fixed_ips}
        found |= {(mac, ipaddress.ip_network(ip, strict=False)) for ip, mac in self.pairs}
        # IPv6 needs its link-local address (neighbour discovery, RFC 4291 section 2.5.6);
        # Neutron allows the EUI-64 one of every allowed MAC the same way
        found |= {(mac, ipaddress.ip_network(eui64_link_local(mac))) for mac in self.macs()}
        return sorted(found, key=lambda s: (s[1].version, s[0], str(s[1])))


def eui64_link_local(mac: str) -> str:
    """fe80::/64 with the modified EUI-64 interface id of ``mac`` (RFC 4291 appendix A)."""
    octets = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:6]])
    return str(_LINK_LOCAL.network_address + int.from_bytes(iid, "big"))


def _net_text(net: IpNet) -> str:
    """As ovs-ofctl prints it: a lone address without /32 or /128."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _source_match(proto: str, field: str, ofport: int, mac: str, net: IpNet) -> str:
    # a /0 pair allows every source: no field (Open vSwitch drops a /0 match from the flow)
    address = f",{field}={_net_text(net)}" if net.prefixlen else ""
    return f"{proto},{_port_match(ofport)},dl_src={mac}{address}"


def port_security(ofport: int, owned: Owned) -> list[FlowMod]:
    """The flows that keep a VM port to its own addresses, as Neutron's agent lays them out.

    Table 0 sends the port's ARP and IPv6 neighbour advertisements to table 24 (priority 10)
    and everything else to table 25 (priority 9). Table 24 lets ARP on only when its sender IP
    is the port's, an advertisement only when its target is; table 25 lets a frame on to
    NORMAL only from the port's MACs. Neutron checks the IP source in its firewall
    (iptables' anti-spoof chain, or the OVS firewall's table 71); tunnelnet has none, so table
    25 also holds IPv4 and IPv6 to the (MAC, address) pairs the port owns, and drops what
    only the network's DHCP server or router may send. A /0 IPv4 address allows any sender,
    so, as in Neutron, ARP then skips table 24 (arp_spa cannot match /0); a /0 IPv6 address
    does the same for advertisements.
    """
    t, p = IntTable, IntPriority
    port = _port_match(ofport)
    sources = owned.sources()
    v4 = sorted({net for _, net in sources if net.version == 4}, key=str)
    v6 = sorted({net for _, net in sources if net.version == 6}, key=str)
    flows: list[FlowMod] = []
    if all(net.prefixlen for net in v4):
        flows.append(FlowMod(t.LOCAL_SWITCHING, p.TO_ARP_SPOOF, f"arp,{port}",
                             f"resubmit(,{t.ARP_SPOOF})"))
        flows.extend(FlowMod(t.ARP_SPOOF, p.ALLOWED, f"arp,{port},arp_spa={_net_text(net)}",
                             f"resubmit(,{t.MAC_SPOOF})") for net in v4)
    if all(net.prefixlen for net in v6):
        # IPv6's ARP: a neighbour advertisement may name only the port's own addresses
        # (Neutron's install_icmpv6_na_spoofing_protection; its allowed ones go on to its
        # rate-limit table, here to 25, which checks the MAC and source as for any packet)
        na = f"icmp6,{port},icmp_type={_ND_ADVERT}"
        flows.append(FlowMod(t.LOCAL_SWITCHING, p.TO_ARP_SPOOF, na,
                             f"resubmit(,{t.ARP_SPOOF})"))
        flows.extend(FlowMod(t.ARP_SPOOF, p.ALLOWED, f"{na},nd_target={_net_text(net)}",
                             f"resubmit(,{t.MAC_SPOOF})") for net in v6)
    flows.append(FlowMod(t.LOCAL_SWITCHING, p.TO_MAC_SPOOF, port, f"resubmit(,{t.MAC_SPOOF})"))
    on = f"resubmit(,{t.TRANSIENT})"
    for mac in owned.macs():
        flows.append(FlowMod(t.MAC_SPOOF, p.ALLOWED, f"{port},dl_src={mac}", on))
        flows.append(FlowMod(t.MAC_SPOOF, p.ALLOWED_SOURCE,
                             f"{_DHCP_REQUEST},{port},dl_src={mac}", on))
        # duplicate address detection and MLD speak before the port has an address (RFC 4862
        # section 5.4.2, RFC 3810 section 5.2.13): ICMPv6 from :: with the port's MAC
        flows.append(FlowMod(t.MAC_SPOOF, p.ALLOWED_SOURCE, f"icmp6,{port},dl_src={mac},"
                             "ipv6_src=::", on))
    for mac, net in sources:
        proto, field = ("ip", "nw_src") if net.version == 4 else ("ipv6", "ipv6_src")
        flows.append(FlowMod(t.MAC_SPOOF, p.ALLOWED_SOURCE,
                             _source_match(proto, field, ofport, mac, net), on))
    flows.extend(FlowMod(t.MAC_SPOOF, p.IP_SPOOF_DROP, f"{proto},{port}", "drop")
                 for proto in ("ip", "ipv6"))
    # nor may it speak as the network's own services, whatever its addresses: Neutron's
    # firewall drops DHCP server replies (UDP 67 -> 68, DHCPv6 547 -> 546) and router
    # advertisements (ICMPv6 134) from instances; a rogue DHCP server would hand out routes
    flows.extend(FlowMod(t.MAC_SPOOF, p.SERVICE_DROP, match.format(port=port), "drop")
                 for match in _SERVICES)
    return flows
