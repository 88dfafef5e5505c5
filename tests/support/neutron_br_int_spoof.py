"""br-int's port-security flows for one port, written from Neutron's Open vSwitch agent.

Independent of tunnelnet: the flows are spelled from the facts of
ovs_neutron_agent.setup_arp_spoofing_protection and the agent's br_int.py (ofctl spelling:
its install_goto writes resubmit(,N)):

- table 0, priority 10: ``arp,in_port=P`` to ARP_SPOOF_TABLE 24 (left out when an IPv4 address
  has a /0 prefix: arp_spa cannot match it, and Neutron skips the protection);
- table 0, priority 9: ``in_port=P`` to MAC_SPOOF_TABLE 25;
- table 24, priority 2: ``arp,in_port=P,arp_spa=A`` to 25 for every IPv4 fixed IP and allowed
  pair address A; table 24 drops the rest (priority 0);
- install_icmpv6_na_spoofing_protection: table 0, priority 10,
  ``icmp6,in_port=P,icmp_type=136`` to 24; table 24, priority 2, ``...,nd_target=A`` on for
  every IPv6 fixed IP and pair address and the EUI-64 link-local address of every allowed MAC
  (left out when an IPv6 address has a /0 prefix). Neutron's "on" there is its rate-limit
  table 59; tunnelnet has none and goes to 25;
- table 25, priority 2: ``in_port=P,dl_src=M`` on, for the port's MAC and every pair's MAC.
  Neutron's next table is LOCAL_EGRESS_TABLE (30), which only leads on to 60; tunnelnet has
  no table 30, so "on" is table 60 here.

What Neutron leaves to its firewall driver and tunnelnet does in table 25, written from the
iptables firewall's anti-spoof rules (source address with the MAC it belongs to; a DHCP
request from 0.0.0.0 to 255.255.255.255, UDP 68 -> 67, before any address) and RFC 4291
(an IPv6 port also owns the EUI-64 link-local address of each of its MACs; DAD and MLD come
from ::): those sources at priority 4, every other IPv4/IPv6 packet dropped at priority 3,
and table 25's own catch-all drop; and the firewall's drops of what only the network's
services send (DHCP server replies UDP 67 -> 68, DHCPv6 547 -> 546, router advertisements
ICMPv6 134) at priority 5.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

ON = "resubmit(,60)"


@dataclass(frozen=True)
class SpoofPort:
    ofport: int
    mac: str
    fixed_ips: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str | None], ...] = field(default=())  # (ip or cidr, mac or None)


def _eui64(mac: str) -> str:
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def defaults(cookie: int) -> list[str]:
    return [f"cookie={cookie:#x},table={t},priority=0 actions=drop" for t in (24, 25)]


def port_flows(port: SpoofPort, cookie: int) -> list[str]:
    c = f"cookie={cookie:#x},"
    p = port.ofport
    pairs = [(ip, (mac or port.mac).lower()) for ip, mac in port.pairs]
    owned = [(ip, port.mac) for ip in port.fixed_ips] + pairs
    macs = sorted({port.mac, *(mac for _, mac in pairs)})
    v4 = {ip for ip, _ in owned if ipaddress.ip_network(ip, strict=False).version == 4}
    v6 = {ip for ip, _ in owned if ipaddress.ip_network(ip, strict=False).version == 6}
    v6 |= {_eui64(mac) for mac in macs}
    flows = [f"{c}table=0,priority=9,in_port={p} actions=resubmit(,25)"]
    if not any(ipaddress.ip_network(ip, strict=False).prefixlen == 0 for ip in v6):
        na = f"icmp6,in_port={p},icmp_type=136"
        flows.append(f"{c}table=0,priority=10,{na} actions=resubmit(,24)")
        flows += [f"{c}table=24,priority=2,{na},nd_target={ip} actions=resubmit(,25)"
                  for ip in v6]
    if not any(ipaddress.ip_network(ip, strict=False).prefixlen == 0 for ip in v4):
        flows.append(f"{c}table=0,priority=10,arp,in_port={p} actions=resubmit(,24)")
        flows += [f"{c}table=24,priority=2,arp,in_port={p},arp_spa={ip} actions=resubmit(,25)"
                  for ip in v4]
    for mac in macs:
        flows += [
            f"{c}table=25,priority=2,in_port={p},dl_src={mac} actions={ON}",
            f"{c}table=25,priority=4,udp,in_port={p},dl_src={mac},nw_src=0.0.0.0,"
            f"nw_dst=255.255.255.255,tp_src=68,tp_dst=67 actions={ON}",
            f"{c}table=25,priority=4,icmp6,in_port={p},dl_src={mac},ipv6_src=:: actions={ON}",
            f"{c}table=25,priority=4,ipv6,in_port={p},dl_src={mac},ipv6_src={_eui64(mac)} "
            f"actions={ON}",
        ]
    for ip, mac in owned:
        net = ipaddress.ip_network(ip, strict=False)
        proto, name = ("ip", "nw_src") if net.version == 4 else ("ipv6", "ipv6_src")
        flows.append(f"{c}table=25,priority=4,{proto},in_port={p},dl_src={mac},{name}={ip} "
                     f"actions={ON}")
    flows += [f"{c}table=25,priority=3,ip,in_port={p} actions=drop",
              f"{c}table=25,priority=3,ipv6,in_port={p} actions=drop",
              f"{c}table=25,priority=5,udp,in_port={p},tp_src=67,tp_dst=68 actions=drop",
              f"{c}table=25,priority=5,udp6,in_port={p},tp_src=547,tp_dst=546 actions=drop",
              f"{c}table=25,priority=5,icmp6,in_port={p},icmp_type=134 actions=drop"]
    return flows
