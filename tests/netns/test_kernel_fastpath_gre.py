"""The kernel fast path's GRE programs on real interfaces (issue #22): two namespaced
hypervisors with a VM each, GRE plans installed through the Python API, real pings and ARP.

This kernel has no GRE module: ``gre_port_ingress`` (inside ``port_ingress``) writes Ethernet
over GRE with a key itself, ``gre_uplink_ingress`` on the uplink takes it off again. Judges:
the VMs' own ping, scapy reading tcpdump's capture of the underlay (RFC 2784/2890: K bit only,
type 0x6558, the key; IPv4 with DF) and of the VM, an AF_PACKET socket of the test's own on the
VM port (what the Python path would see). Expected counters are the packets the test sent.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.utils import rdpcap

from support.netns import Lab, inside, run, two_hypervisors
from support.netns_capture import link_of, start_capture, stop_capture
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, KernelFastPath
from tunnelnet.datapath.kernel_maps import EncapPortPlan, EncapStat, EncapTunnelPlan, Inner

pytestmark = pytest.mark.netns

KEY = 0xC0FFEE42  # wider than a VNI: GRE keys are 32 bits
VM_MTU = 1400
MAX_FRAME = VM_MTU + 14
ICMP_ECHO_FRAME = 14 + 20 + 8 + 56
ARP_FRAME = 14 + 28
ETH_P_ALL = 0x0003
ECHO_REQUEST, ECHO_REPLY = 8, 0
TTL = {1: 77, 2: 64}  # the outer TTL each hypervisor's plans give (its ip_default_ttl)


@dataclass
class Hypervisor:
    ns: str
    fastpath: KernelFastPath
    tap_ifindex: int
    uplink_ifindex: int
    uplink_mac: str
    underlay_ip: str
    vm_mac: str


@dataclass
class Site:
    ns: dict[str, str]
    hv: dict[int, Hypervisor]

    def ping(self, i: int, kind: int) -> Inner:
        """The kernel key of an echo request or reply VM i sends to the other VM."""
        return Inner(self.hv[3 - i].vm_mac, self.hv[i].vm_mac, 0x0800, 1, f"10.0.0.{i}",
                     f"10.0.0.{3 - i}", kind, 0)

    def arp(self, i: int) -> Inner:
        return Inner(self.hv[3 - i].vm_mac, self.hv[i].vm_mac, 0x0806)

    def install(self, i: int, inner: Inner, *, with_macs: bool = True) -> None:
        """VM i's ``inner`` into GRE at hypervisor i, and to the VM at the other one."""
        here, there = self.hv[i], self.hv[3 - i]
        here.fastpath.install_encap_port(EncapPortPlan(
            here.tap_ifindex, inner, KEY, here.underlay_ip, there.underlay_ip,
            here.uplink_ifindex, MAX_FRAME, there.uplink_mac if with_macs else None,
            here.uplink_mac if with_macs else None, TTL[i]))
        there.fastpath.install_encap_tunnel(EncapTunnelPlan(KEY, here.underlay_ip,
                                                        there.underlay_ip, inner,
                                                        there.tap_ifindex))



@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    made = Lab()
    loaded: list[KernelFastPath] = []
    try:
        ns = two_hypervisors(made, vm_mtu=VM_MTU)
        hvs: dict[int, Hypervisor] = {}
        for i in (1, 2):
            hv = ns[f"hv{i}"]
            fastpath = KernelFastPath.load()
            loaded.append(fastpath)
            tap = int(str(link_of(hv, f"tap{i}")["ifindex"]))
            uplink = link_of(hv, "eth0")
            uplink_ifindex = int(str(uplink["ifindex"]))
            inside(hv, lambda fp=fastpath, t=tap: fp.attach_port(t))  # type: ignore[misc]
            inside(hv, lambda fp=fastpath, u=uplink_ifindex:  # type: ignore[misc]
                   fp.attach_gre_uplink(u))
            hvs[i] = Hypervisor(hv, fastpath, tap, uplink_ifindex, str(uplink["address"]),
                                f"192.0.2.{i}", str(link_of(ns[f"vm{i}"], "eth0")["address"]))
        for i in (1, 2):  # broadcasts are not the kernel's: the VMs know each other's MAC
            run(["ip", "-n", ns[f"vm{i}"], "neigh", "replace", f"10.0.0.{3 - i}", "lladdr",
                 hvs[3 - i].vm_mac, "dev", "eth0", "nud", "permanent"])
        yield Site(ns, hvs)
    finally:
        made.close()
        for fastpath in loaded:
            fastpath.attached.clear()
            fastpath.uplinks.clear()  # the interfaces went, and their filters with them
            fastpath.close()




def test_ping_goes_both_ways_in_gre_written_by_the_kernel_and_is_counted_exactly(
        site: Site, tmp_path: Path) -> None:
    for i in (1, 2):
        site.install(i, site.ping(i, ECHO_REQUEST))
        site.install(i, site.ping(i, ECHO_REPLY))
    hv1, hv2 = site.hv[1], site.hv[2]
    before = {i: site.hv[i].fastpath.encap_stats() for i in (1, 2)}
    capture = start_capture(site.ns["ul"], "br0", tmp_path / "ul.pcap", "ip", "proto", "47")
    try:
        proc = run(["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", "10.0.0.2"],
                   netns=site.ns["vm1"], timeout=20, check=False)
        assert proc.returncode == 0, proc.stdout
    finally:
        stop_capture(capture)
    for counters in (hv1.fastpath.encap_port_counters(hv1.tap_ifindex, site.ping(1, 8)),
                     hv2.fastpath.encap_tunnel_counters(KEY, hv1.underlay_ip, site.ping(1, 8)),
                     hv2.fastpath.encap_port_counters(hv2.tap_ifindex, site.ping(2, 0)),
                     hv1.fastpath.encap_tunnel_counters(KEY, hv2.underlay_ip, site.ping(2, 0))):
        assert counters is not None
        assert (counters.packets, counters.bytes) == (5, 5 * ICMP_ECHO_FRAME)
    for i in (1, 2):
        after = site.hv[i].fastpath.encap_stats()
        assert after[EncapStat.GRE_SENT] - before[i][EncapStat.GRE_SENT] == 5
        assert after[EncapStat.GRE_RECEIVED] - before[i][EncapStat.GRE_RECEIVED] == 5
        assert after[EncapStat.FAILED] == 0
    packets = [p for p in rdpcap(str(tmp_path / "ul.pcap")) if p.haslayer(GRE)]
    assert len(packets) == 10
    for pkt in packets:
        src, dst = (hv1, hv2) if pkt[IP].src == hv1.underlay_ip else (hv2, hv1)
        assert (pkt[Ether].src, pkt[Ether].dst) == (src.uplink_mac, dst.uplink_mac)
        ip, gre = pkt[IP], pkt[GRE]
        assert (ip.dst, ip.ttl, ip.flags, ip.frag, ip.id, ip.ihl) == (
            dst.underlay_ip, TTL[1 if src is hv1 else 2], "DF", 0, 0, 5)
        assert IP(bytes(ip)[:20]).chksum == ip.chksum
        assert (gre.chksum_present, gre.routing_present, gre.key_present, gre.seqnum_present,
                gre.version, gre.proto, gre.key) == (0, 0, 1, 0, 0, 0x6558, KEY)
        inner = gre[Ether]
        assert (inner.src, inner.dst, len(inner)) == (src.vm_mac, dst.vm_mac, ICMP_ECHO_FRAME)
        assert inner[ICMP].type == (ECHO_REQUEST if src is hv1 else ECHO_REPLY)


_SEND_ARP = """
import sys
from scapy.all import ARP, Ether, sendp
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
frame = Ether(src=src, dst=dst) / ARP(op=1, hwsrc=src, psrc="10.0.0.1", pdst="10.0.0.2")
sendp(frame, iface="eth0", count=count, inter=0.05, verbose=False)
"""


def _send_arp(site: Site, count: int) -> None:
    run([sys.executable, "-c", _SEND_ARP, site.hv[1].vm_mac, site.hv[2].vm_mac, str(count)],
        netns=site.ns["vm1"], timeout=60)


def _tap_socket(site: Site) -> socket.socket:
    """hv1's VM port as the Python path reads it: an AF_PACKET socket with the filter."""
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind(("tap1", 0))
        sock.settimeout(0.3)
        return sock
    sock = inside(site.hv[1].ns, make)
    site.hv[1].fastpath.filter_socket(sock)
    return sock


def _arps_seen(sock: socket.socket) -> int:
    seen = 0
    while True:
        try:
            frame = sock.recv(65536)
        except TimeoutError:
            return seen
        if frame[12:14] == b"\x08\x06":
            seen += 1


def test_arp_goes_into_gre_by_its_own_helper_only_with_the_next_hops_mac(
        site: Site, tmp_path: Path) -> None:
    """bpf_skb_adjust_room takes IP only: an ARP frame grows at its head, with the outer
    Ethernet addresses the entry holds. Without them, the frame is the Python path's."""
    hv1, hv2 = site.hv[1], site.hv[2]
    sock = _tap_socket(site)
    try:
        site.install(1, site.arp(1), with_macs=False)
        _send_arp(site, 3)
        assert _arps_seen(sock) == 3  # the Python path has them: the kernel sent none
        counters = hv1.fastpath.encap_port_counters(hv1.tap_ifindex, site.arp(1))
        assert counters is not None and counters.packets == 0
        site.install(1, site.arp(1))
        capture = start_capture(site.ns["ul"], "br0", tmp_path / "ul.pcap", "ip", "proto", "47")
        at_vm = start_capture(site.ns["vm2"], "eth0", tmp_path / "vm2.pcap", "arp")
        try:
            _send_arp(site, 5)
        finally:
            stop_capture(capture)
            stop_capture(at_vm)
        assert _arps_seen(sock) == 0  # the kernel's, hidden from Python
    finally:
        sock.close()
    for counters in (hv1.fastpath.encap_port_counters(hv1.tap_ifindex, site.arp(1)),
                     hv2.fastpath.encap_tunnel_counters(KEY, hv1.underlay_ip, site.arp(1))):
        assert counters is not None
        assert (counters.packets, counters.bytes) == (5, 5 * ARP_FRAME)
    packets = [p for p in rdpcap(str(tmp_path / "ul.pcap")) if p.haslayer(GRE)]
    assert len(packets) == 5
    for pkt in packets:
        assert (pkt[Ether].src, pkt[Ether].dst) == (hv1.uplink_mac, hv2.uplink_mac)
        assert (pkt[IP].src, pkt[IP].dst, pkt[IP].flags) == (hv1.underlay_ip,
                                                             hv2.underlay_ip, "DF")
        assert (pkt[GRE].key_present, pkt[GRE].chksum_present, pkt[GRE].key) == (1, 0, KEY)
        assert pkt[GRE][ARP].hwsrc == hv1.vm_mac
    delivered = [p for p in rdpcap(str(tmp_path / "vm2.pcap"))
                 if p.haslayer(ARP) and p[Ether].src == hv1.vm_mac]
    assert len(delivered) == 5
    assert all(len(p) == ARP_FRAME for p in delivered)  # the VM's frame, as it was sent
