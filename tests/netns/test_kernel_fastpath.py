"""The kernel fast path's programs on real interfaces: two namespaced hypervisors with a VM
each, plans installed through the Python API, real pings and TCP.

Judges: the VMs' own ping and iperf3 (delivered or not), scapy reading tcpdump's capture of
the underlay (VXLAN per RFC 7348: UDP 4789, the VNI, the VM's frame inside), AF_PACKET
sockets of the test's own on the VM port (what the Python path would see). Expected counter
values are the packets the test sent and their sizes from the IP/ICMP headers.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

from support.netns import Lab, inside, run, two_hypervisors
from support.netns_capture import capturing, link_of
from support.tools import require_tool
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, KernelFastPath, ensure_vxlan_device
from tunnelnet.datapath.kernel_maps import Inner, PortPlan, Stat, TunnelPlan
from tunnelnet.datapath.kernel_upcall import UpcallReader

pytestmark = pytest.mark.netns

VNI = 4242
VM_MTU = 1450  # the MTU a VM gets over VXLAN over a 1500-byte underlay
MAX_FRAME = VM_MTU + 14
ETH_P_ALL = 0x0003
ICMP_ECHO_FRAME = 14 + 20 + 8 + 56  # ping's default 56 bytes of data
# the TCP flow of the TCP tests, with ports fixed so that its plans can be made by hand
TCP_CLIENT_PORT, TCP_SERVER_PORT = 40123, 5301
ECHO_REQUEST, ECHO_REPLY, IPPROTO_ICMP, IPPROTO_TCP = 8, 0, 1, 6


@dataclass
class Hypervisor:
    ns: str
    fastpath: KernelFastPath
    tap_ifindex: int
    vxlan_ifindex: int
    underlay_ip: str
    vm_mac: str


@dataclass
class Site:
    ns: dict[str, str]
    hv: dict[int, Hypervisor]

    def inner(self, i: int, proto: int, l4_src: int, l4_dst: int) -> Inner:
        """The kernel key of a frame VM i sends to the other VM (struct inner_key)."""
        return Inner(self.hv[3 - i].vm_mac, self.hv[i].vm_mac, 0x0800, proto, f"10.0.0.{i}",
                     f"10.0.0.{3 - i}", l4_src, l4_dst)

    def ping(self, i: int, kind: int = ECHO_REQUEST) -> Inner:
        return self.inner(i, IPPROTO_ICMP, kind, 0)

    def frames(self) -> list[tuple[int, Inner]]:
        """Every flow the tests send: pings both ways, the TCP flow and its ACKs."""
        return [(i, inner) for i in (1, 2) for inner in (
            self.ping(i, ECHO_REQUEST), self.ping(i, ECHO_REPLY),
            self.inner(i, IPPROTO_TCP, *((TCP_CLIENT_PORT, TCP_SERVER_PORT) if i == 1
                                         else (TCP_SERVER_PORT, TCP_CLIENT_PORT))))]

    def port_plan(self, i: int, inner: Inner) -> PortPlan:
        here, there = self.hv[i], self.hv[3 - i]
        return PortPlan(here.tap_ifindex, inner, VNI, there.underlay_ip, here.vxlan_ifindex,
                        MAX_FRAME)

    def tunnel_plan(self, i: int, inner: Inner) -> TunnelPlan:
        """Hypervisor i delivers ``inner`` (sent by the other VM) to its VM."""
        here, there = self.hv[i], self.hv[3 - i]
        return TunnelPlan(VNI, there.underlay_ip, inner, here.tap_ifindex)

    def install_all(self) -> None:
        for i, inner in self.frames():
            self.hv[i].fastpath.install_port(self.port_plan(i, inner))
            self.hv[3 - i].fastpath.install_tunnel(self.tunnel_plan(3 - i, inner))


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
            vxlan = inside(hv, lambda: ensure_vxlan_device("tnfp0"))
            tap = int(str(link_of(hv, f"tap{i}")["ifindex"]))
            inside(hv, lambda fp=fastpath, t=tap: fp.attach_port(t))  # type: ignore[misc]
            inside(hv, lambda fp=fastpath, v=vxlan: fp.attach_tunnel_device(v))  # type: ignore[misc]
            mac = str(link_of(ns[f"vm{i}"], "eth0")["address"])
            hvs[i] = Hypervisor(hv, fastpath, tap, vxlan, f"192.0.2.{i}", mac)
        for i in (1, 2):  # broadcasts are not the kernel's: the VMs know each other's MAC
            run(["ip", "-n", ns[f"vm{i}"], "neigh", "replace", f"10.0.0.{3 - i}", "lladdr",
                 hvs[3 - i].vm_mac, "dev", "eth0", "nud", "permanent"])
        yield Site(ns, hvs)
    finally:
        made.close()  # the interfaces, their filters and the VXLAN devices go with it
        for fastpath in loaded:
            fastpath.attached.clear()
            fastpath.close()


def _ping(ns: str, dst: str, count: int = 3, size: int | None = None,
          timeout: float = 20) -> subprocess.CompletedProcess[str]:
    size_args = ["-s", str(size), "-M", "do"] if size is not None else []
    return run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", *size_args, dst],
               netns=ns, timeout=timeout, check=False)


def _tap_socket(site: Site, i: int, *, filtered: bool) -> socket.socket:
    """An AF_PACKET socket on hypervisor i's VM port, as the Python path opens one."""
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((f"tap{i}", 0))
        sock.settimeout(0.2)
        return sock
    sock = inside(site.hv[i].ns, make)
    if filtered:
        site.hv[i].fastpath.filter_socket(sock)
    return sock


def _echo_requests_seen(sock: socket.socket, dst_mac: str) -> int:
    """ICMP echo requests to ``dst_mac`` the socket received (drained until quiet)."""
    seen = 0
    want = bytes.fromhex(dst_mac.replace(":", ""))
    while True:
        try:
            frame = sock.recv(65536)
        except TimeoutError:
            return seen
        if frame[:6] == want and frame[12:14] == b"\x08\x00" and frame[23] == 1 \
                and frame[34] == 8:
            seen += 1


def test_ping_is_replayed_by_the_kernel_counted_exactly_and_vxlan_on_the_wire(
        site: Site, tmp_path: Path) -> None:
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    pcap = tmp_path / "ul.pcap"
    with capturing(site.ns["ul"], "br0", pcap, "udp port 4789"):
        assert _ping(site.ns["vm1"], "10.0.0.2", count=5).returncode == 0
    # five requests out of hv1 and into hv2's VM, five replies back: no more, no fewer
    for counters in (hv1.fastpath.port_counters(hv1.tap_ifindex, site.ping(1)),
                     hv2.fastpath.tunnel_counters(VNI, hv1.underlay_ip, site.ping(1)),
                     hv2.fastpath.port_counters(hv2.tap_ifindex, site.ping(2, ECHO_REPLY)),
                     hv1.fastpath.tunnel_counters(VNI, hv2.underlay_ip,
                                                  site.ping(2, ECHO_REPLY))):
        assert counters is not None
        assert (counters.packets, counters.bytes) == (5, 5 * ICMP_ECHO_FRAME)
        assert 0 < counters.last_used_ns <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    packets = [p for p in rdpcap(str(pcap)) if p.haslayer(VXLAN)]
    requests = [p for p in packets if p[VXLAN].haslayer(ICMP) and p[VXLAN][ICMP].type == 8]
    replies = [p for p in packets if p[VXLAN].haslayer(ICMP) and p[VXLAN][ICMP].type == 0]
    assert (len(requests), len(replies)) == (5, 5)
    for pkt, src, dst in [(p, hv1, hv2) for p in requests] + [(p, hv2, hv1) for p in replies]:
        assert (pkt[IP].src, pkt[IP].dst, pkt[UDP].dport) == (src.underlay_ip, dst.underlay_ip,
                                                              4789)
        assert pkt[VXLAN].vni == VNI and pkt[VXLAN].flags & 0x08  # RFC 7348: I flag, the VNI
        inner = pkt[VXLAN][Ether]
        assert (inner.src, inner.dst) == (src.vm_mac, dst.vm_mac)
        assert len(inner) == ICMP_ECHO_FRAME


def test_python_path_socket_does_not_see_frames_the_kernel_forwards(site: Site) -> None:
    site.install_all()
    plain = _tap_socket(site, 1, filtered=False)
    filtered = _tap_socket(site, 1, filtered=True)
    try:
        assert _ping(site.ns["vm1"], "10.0.0.2", count=3).returncode == 0
        # the trap: the tap sees every frame before tc ingress redirects it ...
        assert _echo_requests_seen(plain, site.hv[2].vm_mac) == 3
        # ... and the socket filter hides exactly those, so Python cannot send them twice
        assert _echo_requests_seen(filtered, site.hv[2].vm_mac) == 0
    finally:
        plain.close()
        filtered.close()


def test_removed_plan_sends_the_next_frame_up_to_the_python_path(site: Site) -> None:
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    assert _ping(site.ns["vm1"], "10.0.0.2", count=2).returncode == 0
    last = hv1.fastpath.remove_port(hv1.tap_ifindex, site.ping(1))
    assert last is not None and last.packets >= 2
    misses = hv1.fastpath.stats()[Stat.PORT_MISS]
    filtered = _tap_socket(site, 1, filtered=True)
    try:
        # no Python path runs here, so the ping is lost: but it reached the Python socket
        assert _ping(site.ns["vm1"], "10.0.0.2", count=2).returncode != 0
        assert _echo_requests_seen(filtered, hv2.vm_mac) == 2
    finally:
        filtered.close()
    assert hv1.fastpath.stats()[Stat.PORT_MISS] >= misses + 2
    assert hv1.fastpath.port_counters(hv1.tap_ifindex, site.ping(1)) is None
    assert hv2.fastpath.tunnel_counters(VNI, hv1.underlay_ip, site.ping(1)) is not None
    assert hv1.fastpath.remove_port(hv1.tap_ifindex, site.ping(1)) is None  # gone is gone


def test_frame_too_big_for_the_tunnel_goes_up_instead_of_being_lost(site: Site) -> None:
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    # a VM whose MTU is wrong for the tunnel (a veth drops what exceeds its MTU, so both ends)
    run(["ip", "-n", site.ns["vm1"], "link", "set", "eth0", "mtu", "1500"])
    run(["ip", "-n", hv1.ns, "link", "set", "tap1", "mtu", "1500"])
    filtered = _tap_socket(site, 1, filtered=True)
    try:
        before = hv1.fastpath.stats()[Stat.PORT_TOO_BIG]
        assert _ping(site.ns["vm1"], "10.0.0.2", count=1, size=1472).returncode != 0
        assert _echo_requests_seen(filtered, hv2.vm_mac) == 1  # the MTU doctor's to answer
        assert hv1.fastpath.stats()[Stat.PORT_TOO_BIG] == before + 1
        # one byte less than the tunnel's limit still goes the kernel's way
        assert _ping(site.ns["vm1"], "10.0.0.2", count=1, size=VM_MTU - 28).returncode == 0
    finally:
        filtered.close()
        run(["ip", "-n", site.ns["vm1"], "link", "set", "eth0", "mtu", str(VM_MTU)])
        run(["ip", "-n", hv1.ns, "link", "set", "tap1", "mtu", str(VM_MTU)])


def test_tunnel_frame_without_a_plan_is_dropped_and_handed_up_whole(site: Site) -> None:
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    assert hv2.fastpath.remove_tunnel(VNI, hv1.underlay_ip, site.ping(1)) is not None
    misses = hv2.fastpath.stats()[Stat.TUNNEL_MISS]
    reader = UpcallReader(hv2.fastpath)
    try:
        assert _ping(site.ns["vm1"], "10.0.0.2", count=2).returncode != 0
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            got += reader.poll(200)
    finally:
        reader.close()
    assert hv2.fastpath.stats()[Stat.TUNNEL_MISS] == misses + 2
    # what went up is what vm1 sent, with the VXLAN header's VNI and the outer source
    assert [(m.vni, m.remote_ip, len(m.frame)) for m in got] == \
        [(VNI, hv1.underlay_ip, ICMP_ECHO_FRAME)] * 2
    for miss in got:
        frame = Ether(miss.frame)
        assert (frame.src, frame.dst) == (hv1.vm_mac, hv2.vm_mac)
        assert (frame[IP].src, frame[IP].dst, frame[ICMP].type) == ("10.0.0.1", "10.0.0.2", 8)
    # a plan for another peer does not open the door to this one (isolation by outer source)
    hv2.fastpath.install_tunnel(TunnelPlan(VNI, "192.0.2.99", site.ping(1), hv2.tap_ifindex))
    assert _ping(site.ns["vm1"], "10.0.0.2", count=1).returncode != 0
    hv2.fastpath.remove_tunnel(VNI, "192.0.2.99", site.ping(1))


_SERVER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.2", {TCP_SERVER_PORT})); s.listen(1); s.settimeout(20)
c, _ = s.accept(); got = 0
while True:
    data = c.recv(1 << 16)
    if not data:
        break
    got += len(data)
c.close()  # first: the TIME_WAIT stays here, and the client's fixed port is free again
print(got)
"""
_CLIENT = f"""
import socket
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(("10.0.0.1", {TCP_CLIENT_PORT})); c.settimeout(20)
c.connect(("10.0.0.2", {TCP_SERVER_PORT})); c.sendall(b"x" * (8 << 20))
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
"""


def _tcp_transfer(site: Site) -> int:
    """8 MiB from vm1 to vm2 over the one TCP flow the plans know; what vm2 received."""
    server = subprocess.Popen(["ip", "netns", "exec", site.ns["vm2"], sys.executable, "-c",
                               _SERVER], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        run([sys.executable, "-c", _CLIENT], netns=site.ns["vm1"], timeout=30)
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    return int(out.strip())


def _tcp(i: int, site: Site) -> Inner:
    ports = (TCP_CLIENT_PORT, TCP_SERVER_PORT) if i == 1 else (TCP_SERVER_PORT, TCP_CLIENT_PORT)
    return site.inner(i, IPPROTO_TCP, *ports)


def test_tcp_flows_through_the_kernel_path(site: Site) -> None:
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    sent = _tcp_transfer(site)
    assert sent == 8 << 20
    carried = hv2.fastpath.tunnel_counters(VNI, hv1.underlay_ip, _tcp(1, site))
    assert carried is not None and carried.bytes >= sent  # payload plus every frame's headers


def test_a_plain_vxlan_device_of_the_same_name_is_refused_not_used(site: Site) -> None:
    hv = site.hv[1].ns
    run(["ip", "-n", hv, "link", "add", "tnplain", "type", "vxlan", "id", "5", "dstport",
         "4790", "remote", "192.0.2.9"])
    try:
        with pytest.raises(DatapathError, match="not a collect_md"):
            inside(hv, lambda: ensure_vxlan_device("tnplain"))
        assert inside(hv, lambda: ensure_vxlan_device("tnfp0")) == site.hv[1].vxlan_ifindex
    finally:
        run(["ip", "-n", hv, "link", "del", "tnplain"])


def test_tso_super_frames_go_whole_and_count_as_their_segments(site: Site) -> None:
    """A VM with TSO hands over up to 64 KiB TCP frames: each segment fits the tunnel, so the
    kernel takes the super-frame whole (the GSO branch of fits()) and counts its segments."""
    require_tool("ethtool")
    site.install_all()
    hv1 = site.hv[1]
    for ns, ifname in ((site.ns["vm1"], "eth0"), (hv1.ns, "tap1")):
        run(["ethtool", "-K", ifname, "tx", "on", "sg", "on", "tso", "on", "gso", "on"],
            netns=ns)
    before = hv1.fastpath.stats()
    try:
        assert _tcp_transfer(site) == 8 << 20
    finally:
        for ns, ifname in ((site.ns["vm1"], "eth0"), (hv1.ns, "tap1")):
            run(["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off"], netns=ns)
    after = hv1.fastpath.stats()
    assert after[Stat.PORT_TOO_BIG] == before[Stat.PORT_TOO_BIG]
    frames = after[Stat.PORT_HIT] - before[Stat.PORT_HIT]
    carried = hv1.fastpath.port_counters(hv1.tap_ifindex, _tcp(1, site))
    assert carried is not None
    assert carried.packets > frames > 0  # fewer frames than segments: super-frames went whole
    assert carried.bytes / frames > MAX_FRAME  # and they were bigger than the tunnel's MTU


def test_a_frame_with_another_networks_vni_is_not_delivered(site: Site) -> None:
    """Isolation: the VNI is part of the tunnel key, so a frame of network 999 to a MAC that
    has a plan only in network VNI never reaches that VM."""
    site.install_all()
    hv1, hv2 = site.hv[1], site.hv[2]
    other = site.port_plan(1, site.ping(1))
    hv1.fastpath.install_port(PortPlan(other.in_ifindex, other.inner, 999, other.remote_ip,
                                       other.tunnel_ifindex, other.max_frame_len))
    misses = hv2.fastpath.stats()[Stat.TUNNEL_MISS]
    delivered = hv2.fastpath.tunnel_counters(VNI, hv1.underlay_ip, site.ping(1))
    assert _ping(site.ns["vm1"], "10.0.0.2", count=2).returncode != 0
    assert hv2.fastpath.stats()[Stat.TUNNEL_MISS] == misses + 2
    assert hv2.fastpath.tunnel_counters(VNI, hv1.underlay_ip, site.ping(1)) == delivered
