"""Hypothesis strategies for headers and whole frames (shared by the packet property tests)."""

from __future__ import annotations

import socket

from hypothesis import strategies as st

from tunnelnet.packet.arp import Arp
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_TEB,
    ETH_TYPE_VLAN,
    GENEVE_PORT,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VXLAN_PORT,
)
from tunnelnet.packet.geneve import Geneve, GeneveOption
from tunnelnet.packet.gre import Gre
from tunnelnet.packet.icmp import Icmp, Icmpv6
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.ipv6 import IPv6
from tunnelnet.packet.raw import Payload
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.udp import Udp
from tunnelnet.packet.vlan import Vlan
from tunnelnet.packet.vxlan import Vxlan

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
ipv4s = st.ip_addresses(v=4).map(str)
# the RFC 5952 text the codec prints (inet_ntop's, e.g. ::ffff:192.0.2.1 for mapped ones)
ipv6s = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))
# EtherTypes that decode does not interpret (so they end in a payload)
other_types = st.integers(0x0600, 0xFFFF).filter(
    lambda t: t not in {ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_ARP, ETH_TYPE_VLAN, 0x88A8}
)
payloads = st.binary(min_size=1, max_size=64).map(Payload)

arps = st.builds(Arp, op=u16, sha=macs, spa=ipv4s, tha=macs, tpa=ipv4s)
vlans = st.builds(Vlan, vid=st.integers(0, 4095), type=st.just(0), pcp=st.integers(0, 7),
                  dei=st.integers(0, 1))
tcps = st.builds(Tcp, sport=u16, dport=u16, seq=u32, ack=u32, flags=st.integers(0, 0xFFF),
                 window=u16, urgent=u16,
                 options=st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n,
                                                                        max_size=4 * n)))
icmps = st.builds(Icmp, type=u8, code=u8, rest=u32)
icmp6s = st.builds(Icmpv6, type=u8, code=u8, rest=u32)
vxlans = st.builds(Vxlan, vni=st.integers(0, (1 << 24) - 1),
                   flags=u8.map(lambda f: f | 0x08), reserved1=st.integers(0, (1 << 24) - 1),
                   reserved2=u8)
gres = st.builds(Gre, protocol=st.just(ETH_TYPE_TEB), key=st.none() | u32, seq=st.none() | u32,
                 checksum_present=st.booleans())
# three options of up to 64 bytes stay inside the 252 bytes Opt Len can count
geneve_options = st.builds(
    GeneveOption, option_class=u16, type=u8,
    data=st.integers(0, 15).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
    reserved=st.integers(0, 7))
geneves = st.builds(Geneve, vni=st.integers(0, (1 << 24) - 1), protocol=st.just(ETH_TYPE_TEB),
                    options=st.lists(geneve_options, max_size=3).map(tuple), oam=st.booleans(),
                    critical=st.booleans(), reserved1=st.integers(0, 63), reserved2=u8)
ipv4_options = st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


def _ipv4(proto: int) -> st.SearchStrategy[IPv4]:
    # whole (unfragmented) packets, so decode walks into the transport layer
    return st.builds(IPv4, src=ipv4s, dst=ipv4s, proto=st.just(proto), ttl=u8, tos=u8,
                     ident=u16, flags=st.sampled_from([0, 2]), options=ipv4_options)


def _ipv6(nh: int) -> st.SearchStrategy[IPv6]:
    return st.builds(IPv6, src=ipv6s, dst=ipv6s, next_header=st.just(nh), hop_limit=u8,
                     traffic_class=u8, flow_label=st.integers(0, (1 << 20) - 1))


def _maybe(strategy: st.SearchStrategy[Layer]) -> st.SearchStrategy[list[Layer]]:
    return st.one_of(st.just([]), strategy.map(lambda layer: [layer]))


@st.composite
def frames(draw: st.DrawFn, depth: int = 0) -> list[Layer]:
    """A well-formed stack of layers, following decode's grammar, possibly tunnelled."""
    layers: list[Layer] = []
    kind = draw(st.sampled_from(["arp", "ipv4", "ipv6", "other"]))
    tagged = draw(st.booleans())
    type_ = {"arp": ETH_TYPE_ARP, "ipv4": ETH_TYPE_IPV4, "ipv6": ETH_TYPE_IPV6,
             "other": draw(other_types)}[kind]
    layers.append(Ethernet(dst=draw(macs), src=draw(macs),
                           type=ETH_TYPE_VLAN if tagged else type_))
    if tagged:
        tag = draw(vlans)
        layers.append(Vlan(vid=tag.vid, type=type_, pcp=tag.pcp, dei=tag.dei))
    if kind == "arp":
        layers.append(draw(arps))
    elif kind == "other":
        layers += draw(_maybe(payloads))
    else:
        l4 = draw(st.sampled_from(["udp", "tcp", "icmp", "gre", "vxlan", "geneve"] if depth < 2
                                  else ["udp", "tcp", "icmp"]))
        v6 = kind == "ipv6"
        proto = {"udp": IPPROTO_UDP, "vxlan": IPPROTO_UDP, "geneve": IPPROTO_UDP,
                 "tcp": IPPROTO_TCP,
                 "gre": IPPROTO_GRE,
                 "icmp": IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP}[l4]
        layers.append(draw(_ipv6(proto) if v6 else _ipv4(proto)))
        if l4 == "udp":
            layers.append(Udp(sport=draw(u16), dport=draw(u16.filter(
                lambda p: p not in (VXLAN_PORT, GENEVE_PORT)))))
            layers += draw(_maybe(payloads))
        elif l4 == "vxlan":
            layers.append(Udp(sport=draw(u16), dport=VXLAN_PORT))
            layers.append(draw(vxlans))
            layers += draw(frames(depth + 1))
        elif l4 == "geneve":
            layers.append(Udp(sport=draw(u16), dport=GENEVE_PORT))
            layers.append(draw(geneves))
            layers += draw(frames(depth + 1))
        elif l4 == "tcp":
            layers.append(draw(tcps))
            layers += draw(_maybe(payloads))
        elif l4 == "icmp":
            layers.append(draw(icmp6s if v6 else icmps))
            layers += draw(_maybe(payloads))
        else:
            layers.append(draw(gres))
            layers += draw(frames(depth + 1))
    return layers
