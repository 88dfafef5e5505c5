"""Port security on br-int: Neutron's ARP spoofing protection, replayed through real tables.

The facts come from Neutron's Open vSwitch agent (ovs_neutron_agent.setup_arp_spoofing_protection
and the native br_int.py): table 0 sends a protected port's ARP to ARP_SPOOF_TABLE (24) at
priority 10 and everything it sends to MAC_SPOOF_TABLE (25) at priority 9; table 24 passes
ARP whose sender IP (arp_spa) is one of the port's fixed IPs or allowed address pairs on to 25
at priority 2 and drops the rest; table 25 passes the port's MACs (its own and the pairs') at
priority 2. Ports with port security off and ports the cloud owns (device_owner "network:")
get none of it; a /0 IPv4 pair lifts the ARP check. The IP source check (Neutron's firewall
anti-spoof rules: source IP with the pair's MAC, and DHCP's 0.0.0.0 -> 255.255.255.255 UDP
68 -> 67 before an address, RFC 2131) is tunnelnet's addition to table 25.

Frames are built and taken apart by scapy, fed through a `Bridge` holding exactly the flows
the agent builds, and judged by where they leave (NORMAL floods to the other port of the VLAN).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether

from tunnelnet.agent import br_int
from tunnelnet.agent.desired import Binding, br_int_flows
from tunnelnet.agent.view import AddressPair, Network, Port, Vnic
from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.switch import Bridge
from tunnelnet.switch.pipeline import IntTable

VM_PORT, OTHER_PORT = 5, 6
MAC = "fa:16:3e:00:00:05"
OTHER_MAC = "fa:16:3e:00:00:06"
IP_ = "10.0.0.5"
OTHER_IP = "10.0.0.6"
GATEWAY = "10.0.0.1"
VIP, VIP_MAC = "10.0.0.100", "fa:16:3e:00:00:64"
NET = Network("n1", "vxlan", 1001)


def _port(**kw: object) -> Port:
    base: dict[str, object] = {"id": "p5", "network_id": "n1", "mac": MAC, "ips": (IP_,),
                               "host": "hv1"}
    base.update(kw)
    return Port(**base)  # type: ignore[arg-type]


def _bridge(port: Port) -> Bridge:
    br = Bridge("br-int", fail_mode="secure")
    br.add_port("tap5", VM_PORT, tag=1)
    br.add_port("tap6", OTHER_PORT, tag=1)
    flows = br_int_flows([], [Binding(Vnic("tap5", VM_PORT, port.id), port, NET)])
    br.add_flows([f.add_text(0x1) for f in flows])
    return br


def _passes(br: Bridge, frame: bytes) -> bool:
    outputs = br.process(extract_flow_key(frame, VM_PORT), len(frame))
    return [o.port for o in outputs] == [OTHER_PORT]


def _arp(mac: str, spa: str, tpa: str, op: int = 1) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                 ARP(op=op, hwsrc=mac, psrc=spa, pdst=tpa))


def _ping(mac: str, src: str) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=src, dst=OTHER_IP) / ICMP())


def _dhcp_discover(mac: str) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                 IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) /
                 (b"\x01" + b"\x00" * 240))


def _n_packets(br: Bridge, table: int, where: str) -> int:
    """n_packets of the one flow of ``table`` whose dump line has ``where`` before actions."""
    line, = (line for line in br.dump_flows(f"table={table}")
             if line.split(" actions=")[0].endswith(where))
    return int(line.split("n_packets=")[1].split(",")[0])


def test_neutron_layout_table_0_sends_arp_to_24_at_10_and_the_rest_to_25_at_9() -> None:
    flows = br_int.port_security(VM_PORT, br_int.Owned(MAC, (IP_,)))
    by_place = {(f.table, f.priority, f.match): f.actions for f in flows}
    assert by_place[(0, 10, f"arp,in_port={VM_PORT}")] == "resubmit(,24)"
    assert by_place[(0, 9, f"in_port={VM_PORT}")] == "resubmit(,25)"
    assert by_place[(24, 2, f"arp,in_port={VM_PORT},arp_spa={IP_}")] == "resubmit(,25)"
    # install_icmpv6_na_spoofing_protection: advertisements to 24 at 10, the EUI-64
    # link-local target of the port's MAC allowed there
    na = f"icmp6,in_port={VM_PORT},icmp_type=136"
    assert by_place[(0, 10, na)] == "resubmit(,24)"
    assert by_place[(24, 2, f"{na},nd_target={br_int.eui64_link_local(MAC)}")] == \
        "resubmit(,25)"
    assert by_place[(25, 2, f"in_port={VM_PORT},dl_src={MAC}")] == "resubmit(,60)"
    defaults = {(f.table, f.priority, f.match): f.actions for f in br_int.default_flows()}
    assert defaults[(24, 0, "")] == "drop"


def test_address_pairs_add_their_ip_to_table_24_and_their_mac_to_table_25() -> None:
    owned = br_int.Owned(MAC, (IP_,), ((VIP, VIP_MAC), ("10.0.1.0/24", MAC)))
    flows = {(f.table, f.priority, f.match) for f in br_int.port_security(VM_PORT, owned)}
    assert (24, 2, f"arp,in_port={VM_PORT},arp_spa={VIP}") in flows
    assert (24, 2, f"arp,in_port={VM_PORT},arp_spa=10.0.1.0/24") in flows
    assert (25, 2, f"in_port={VM_PORT},dl_src={VIP_MAC}") in flows


def test_a_zero_prefix_pair_lifts_the_arp_check_as_neutron_does() -> None:
    owned = br_int.Owned(MAC, (IP_,), (("0.0.0.0/0", MAC),))
    flows = br_int.port_security(VM_PORT, owned)
    assert not [f for f in flows if f.match.startswith("arp,")]
    br = _bridge(_port(address_pairs=(AddressPair("0.0.0.0/0", MAC),)))
    assert _passes(br, _arp(MAC, OTHER_IP, OTHER_IP))
    assert _passes(br, _ping(MAC, "192.0.2.77"))
    assert not _passes(br, _ping(OTHER_MAC, IP_))  # the MAC is still checked


def test_eui64_link_local_follows_rfc_4291() -> None:
    # RFC 4291 appendix A: flip the universal/local bit, insert ff:fe in the middle
    assert br_int.eui64_link_local("fa:16:3e:00:00:05") == "fe80::f816:3eff:fe00:5"


def test_own_addresses_pass_and_forgeries_are_dropped_in_the_table_that_checks_them() -> None:
    br = _bridge(_port())
    assert _passes(br, _arp(MAC, IP_, OTHER_IP))
    assert _passes(br, _ping(MAC, IP_))
    assert _passes(br, _dhcp_discover(MAC))
    forged = {
        "gratuitous ARP for the neighbour's address": (_arp(MAC, OTHER_IP, OTHER_IP), 24),
        "gratuitous ARP for the gateway": (_arp(MAC, GATEWAY, GATEWAY, op=2), 24),
        "ARP from the neighbour's MAC": (_arp(OTHER_MAC, IP_, OTHER_IP), 25),
        "IP from the neighbour's IP": (_ping(MAC, OTHER_IP), 25),
        "IP from the neighbour's MAC": (_ping(OTHER_MAC, IP_), 25),
        "DHCP from another MAC": (_dhcp_discover(OTHER_MAC), 25),
    }
    for what, (frame, table) in forged.items():
        trace = br.trace(_flow_text(frame))
        assert trace.drop, what
        assert trace.steps[-1].table == table, what
        assert not _passes(br, frame), what


def test_ipv6_sources_are_held_to_the_port_and_its_link_local_address() -> None:
    port = _port(ips=(IP_, "2001:db8::5"))
    br = _bridge(port)
    lla = br_int.eui64_link_local(MAC)

    def v6(src: str, mac: str = MAC) -> bytes:
        return bytes(Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1") /
                     ICMPv6ND_NA(tgt=src))

    assert _passes(br, v6("2001:db8::5"))
    assert _passes(br, v6(lla))
    # IPv6's gratuitous ARP: an advertisement naming another's address, from its own source
    forged_na = bytes(Ether(src=MAC, dst="33:33:00:00:00:01") /
                      IPv6(src="2001:db8::5", dst="ff02::1") / ICMPv6ND_NA(tgt="2001:db8::6"))
    trace = br.trace(_flow_text(forged_na))
    assert trace.drop and trace.steps[-1].table == IntTable.ARP_SPOOF
    # duplicate address detection (RFC 4862 5.4.2) comes from ::
    assert _passes(br, bytes(Ether(src=MAC, dst="33:33:ff:00:00:05") /
                             IPv6(src="::", dst="ff02::1:ff00:5") /
                             ICMPv6ND_NS(tgt="2001:db8::5")))
    assert not _passes(br, v6("2001:db8::6"))
    assert not _passes(br, v6(lla, OTHER_MAC))


def test_an_allowed_pair_passes_only_with_its_own_mac() -> None:
    br = _bridge(_port(address_pairs=(AddressPair(VIP, VIP_MAC),)))
    assert _passes(br, _arp(VIP_MAC, VIP, VIP))
    assert _passes(br, _ping(VIP_MAC, VIP))
    assert not _passes(br, _ping(MAC, VIP))  # a pair binds its address to its MAC
    assert not _passes(br, _ping(VIP_MAC, OTHER_IP))


def test_a_vm_cannot_answer_as_the_networks_dhcp_server_but_the_dhcp_port_can() -> None:
    offer = bytes(Ether(src=MAC, dst="ff:ff:ff:ff:ff:ff") /
                  IP(src=IP_, dst="255.255.255.255") / UDP(sport=67, dport=68) /
                  (b"\x02" + b"\x00" * 240))
    br = _bridge(_port())
    trace = br.trace(_flow_text(offer))
    assert trace.drop and (trace.steps[-1].table, trace.steps[-1].priority) == (25, 5)
    assert _passes(_bridge(_port(device_owner="network:dhcp")), offer)


@pytest.mark.parametrize("port", [
    _port(port_security=False),
    _port(device_owner="network:dhcp"),
], ids=["port_security_false", "network_owned"])
def test_unprotected_ports_send_anything(port: Port) -> None:
    br = _bridge(port)
    assert _passes(br, _arp(MAC, GATEWAY, GATEWAY))
    assert _passes(br, _ping(OTHER_MAC, OTHER_IP))
    assert not [line for line in br.dump_flows() if f"in_port={VM_PORT}" in line]


def test_drops_are_counted_on_the_drop_flow_of_their_table() -> None:
    br = _bridge(_port())
    for _ in range(3):
        frame = _arp(MAC, GATEWAY, GATEWAY)
        br.process(extract_flow_key(frame, VM_PORT), len(frame))
    frame = _ping(MAC, OTHER_IP)
    br.process(extract_flow_key(frame, VM_PORT), len(frame))
    assert _n_packets(br, 24, "priority=0") == 3
    assert _n_packets(br, 25, f"priority=3,ip,in_port={VM_PORT}") == 1
    assert _n_packets(br, 25, "priority=0") == 0


def _flow_text(frame: bytes) -> str:
    from tunnelnet.switch.flow_format import format_key

    return format_key(extract_flow_key(frame, VM_PORT))
