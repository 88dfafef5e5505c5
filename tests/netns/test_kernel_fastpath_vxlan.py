"""The kernel fast path writing and reading VXLAN itself (issue #22), against Linux's own
VXLAN device as the peer.

hv1 runs the replay programs with VXLAN plans installed through the Python API:
``port_ingress`` wraps the VM's frames in Ethernet/IPv4/UDP/VXLAN and sends them to the
uplink; ``underlay_ingress`` unwraps VXLAN that has an entry and hands it to the VM port. hv2
is plain Linux: a VXLAN device (``ip link add type vxlan``) bridged with its VM's port. Judges:
the VMs' own ping and a TCP transfer through Linux's device (it takes what we send, and we
take what it sends), scapy reading tcpdump's capture of the underlay (RFC 7348: UDP to 4789
from a port in 49152-65535, checksum zero, flags exactly I, the VNI, reserved bits zero) and
of the VM, the bytes the receiving VM read. Expected counters are the packets the test sent.
"""

from __future__ import annotations

import hashlib
import subprocess
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
from support.netns_capture import link_of, start_capture, stop_capture
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, KernelFastPath
from tunnelnet.datapath.kernel_maps import (
    EncapKind,
    EncapPortPlan,
    EncapStat,
    EncapTunnelPlan,
    Inner,
)

pytestmark = pytest.mark.netns

VNI = 0x5A17E
VM_MTU = 1400
MAX_FRAME = VM_MTU + 14
ICMP_ECHO_FRAME = 14 + 20 + 8 + 56
ECHO_REQUEST, ECHO_REPLY = 8, 0
TCP_PORT, CLIENT_PORT = 5201, 40123
TRANSFER = 8 * 1024 * 1024


@dataclass
class Site:
    ns: dict[str, str]
    fastpath: KernelFastPath
    tap_ifindex: int
    uplink_ifindex: int
    macs: dict[str, str]  # hv1, hv2 (their eth0), vm1, vm2

    def inner(self, i: int, proto: int, src_port: int, dst_port: int) -> Inner:
        """The kernel key of a frame VM i sends to the other VM."""
        return Inner(self.macs[f"vm{3 - i}"], self.macs[f"vm{i}"], 0x0800, proto,
                     f"10.0.0.{i}", f"10.0.0.{3 - i}", src_port, dst_port)

    def install(self, sent: Inner, answered: Inner) -> None:
        """``sent`` by VM1 into VXLAN written by hv1's programs; ``answered`` (from hv2's
        Linux device) unwrapped by them and handed to VM1."""
        self.fastpath.install_encap_port(EncapPortPlan(
            self.tap_ifindex, sent, VNI, "192.0.2.1", "192.0.2.2", self.uplink_ifindex,
            MAX_FRAME, self.macs["hv2"], self.macs["hv1"], 64, EncapKind.VXLAN))
        self.fastpath.install_encap_tunnel(EncapTunnelPlan(
            VNI, "192.0.2.2", "192.0.2.1", answered, self.tap_ifindex, EncapKind.VXLAN))



def _linux_vxlan_peer(hv: str) -> None:
    """hv2: Linux's VXLAN device towards hv1, bridged with the VM's port. ``noudpcsum``: a
    checksum would send what it sends up the stack to verify (underlay_ingress leaves that
    to the collect_md device, which this test does not have)."""
    run(["ip", "-n", hv, "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "remote",
         "192.0.2.1", "local", "192.0.2.2", "dstport", "4789", "noudpcsum", "nolearning"])
    run(["ip", "-n", hv, "link", "add", "brvm", "type", "bridge"])
    for ifname in ("vx0", "tap2"):
        run(["ip", "-n", hv, "link", "set", ifname, "master", "brvm"])
    for ifname in ("vx0", "brvm"):
        run(["ip", "-n", hv, "link", "set", ifname, "up"])


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    made = Lab()
    fastpath: KernelFastPath | None = None
    try:
        ns = two_hypervisors(made, vm_mtu=VM_MTU)
        _linux_vxlan_peer(ns["hv2"])
        fastpath = KernelFastPath.load()
        tap = int(str(link_of(ns["hv1"], "tap1")["ifindex"]))
        uplink = int(str(link_of(ns["hv1"], "eth0")["ifindex"]))
        inside(ns["hv1"], lambda fp=fastpath: fp.attach_port(tap))  # type: ignore[misc]
        inside(ns["hv1"], lambda fp=fastpath: fp.attach_underlay(uplink))  # type: ignore[misc]
        macs = {f"hv{i}": str(link_of(ns[f"hv{i}"], "eth0")["address"]) for i in (1, 2)}
        macs |= {f"vm{i}": str(link_of(ns[f"vm{i}"], "eth0")["address"]) for i in (1, 2)}
        for i in (1, 2):  # broadcasts are not the kernel's: the VMs know each other's MAC
            run(["ip", "-n", ns[f"vm{i}"], "neigh", "replace", f"10.0.0.{3 - i}", "lladdr",
                 macs[f"vm{3 - i}"], "dev", "eth0", "nud", "permanent"])
        yield Site(ns, fastpath, tap, uplink, macs)
    finally:
        made.close()
        if fastpath is not None:
            fastpath.attached.clear()  # the interfaces went, and their filters with them
            fastpath.close()




def test_ping_crosses_linuxs_vxlan_device_in_vxlan_written_and_read_by_the_kernel(
        site: Site, tmp_path: Path) -> None:
    fp = site.fastpath
    request, reply = site.inner(1, 1, ECHO_REQUEST, 0), site.inner(2, 1, ECHO_REPLY, 0)
    site.install(request, reply)
    before = fp.encap_stats()
    underlay = start_capture(site.ns["ul"], "br0", tmp_path / "ul.pcap", "udp", "port", "4789")
    at_vm = start_capture(site.ns["vm1"], "eth0", tmp_path / "vm1.pcap", "icmp")
    try:
        proc = run(["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", "10.0.0.2"],
                   netns=site.ns["vm1"], timeout=20, check=False)
    finally:
        stop_capture(underlay)
        stop_capture(at_vm)
    assert proc.returncode == 0, proc.stdout  # Linux took ours, we took Linux's
    for counters in (fp.encap_port_counters(site.tap_ifindex, request),
                     fp.encap_tunnel_counters(VNI, "192.0.2.2", reply, EncapKind.VXLAN)):
        assert counters is not None
        assert (counters.packets, counters.bytes) == (5, 5 * ICMP_ECHO_FRAME)
    after = fp.encap_stats()
    assert after[EncapStat.VXLAN_SENT] - before[EncapStat.VXLAN_SENT] == 5
    assert after[EncapStat.VXLAN_RECEIVED] - before[EncapStat.VXLAN_RECEIVED] == 5
    assert after[EncapStat.FAILED] == 0
    sent_by_vm = [bytes(p) for p in rdpcap(str(tmp_path / "vm1.pcap"))
                  if p.haslayer(ICMP) and p[ICMP].type == ECHO_REQUEST]
    ours = [p for p in rdpcap(str(tmp_path / "ul.pcap")) if p[IP].src == "192.0.2.1"]
    assert len(ours) == 5 and len(sent_by_vm) == 5
    for pkt, frame in zip(ours, sent_by_vm, strict=True):
        assert (pkt[Ether].src, pkt[Ether].dst) == (site.macs["hv1"], site.macs["hv2"])
        ip, udp = pkt[IP], pkt[UDP]
        assert (ip.dst, ip.ttl, ip.flags, ip.frag, ip.ihl, ip.len) == (
            "192.0.2.2", 64, "DF", 0, 5, 20 + 8 + 8 + ICMP_ECHO_FRAME)
        assert IP(bytes(ip)[:20]).chksum == ip.chksum  # scapy's own sum of the header
        assert udp.dport == 4789 and 49152 <= udp.sport <= 65535
        assert (udp.chksum, udp.len) == (0, 8 + 8 + ICMP_ECHO_FRAME)
        vxlan = bytes(udp.payload)[:8]
        assert vxlan[0] == 0x08 and vxlan[1:4] == b"\0\0\0" and vxlan[7] == 0
        assert pkt[VXLAN].vni == VNI
        assert bytes(pkt[VXLAN].payload) == frame  # the VM's frame, untouched
    assert len({p[UDP].sport for p in ours}) == 1  # one inner flow, one source port


_SERVE = """
import hashlib, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("10.0.0.2", int(sys.argv[1]))); srv.listen(1); srv.settimeout(30)
conn, _ = srv.accept(); conn.settimeout(30)
digest, total = hashlib.sha256(), 0
while chunk := conn.recv(1 << 20):
    digest.update(chunk); total += len(chunk)
print(total, digest.hexdigest(), flush=True)
"""

_SEND = """
import socket, sys
data = bytes(range(256)) * (int(sys.argv[3]) // 256)
c = socket.socket(); c.bind(("10.0.0.1", int(sys.argv[2]))); c.settimeout(30)
c.connect(("10.0.0.2", int(sys.argv[1]))); c.sendall(data); c.close()
"""


def test_a_tcp_transfer_goes_whole_with_tso_super_frames_wrapped_by_the_kernel(
        site: Site) -> None:
    """The VM's TSO super-frames are wrapped whole (FIXED_GSO) and cut on the way out: the
    kernel counts more segments than frames it wrapped, and Linux's device delivers every
    byte in order."""
    fp = site.fastpath
    for ns, ifname in ((site.ns["vm1"], "eth0"), (site.ns["hv1"], "tap1")):
        run(["ethtool", "-K", ifname, "tx", "on", "sg", "on", "tso", "on", "gso", "on"],
            netns=ns)
    data = site.inner(1, 6, CLIENT_PORT, TCP_PORT)
    acks = site.inner(2, 6, TCP_PORT, CLIENT_PORT)
    site.install(data, acks)
    before = fp.encap_stats()
    server = subprocess.Popen(["ip", "netns", "exec", site.ns["vm2"], "python3", "-c", _SERVE,
                               str(TCP_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        run(["python3", "-c", _SEND, str(TCP_PORT), str(CLIENT_PORT), str(TRANSFER)],
            netns=site.ns["vm1"], timeout=60)
        out, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    expected = hashlib.sha256(bytes(range(256)) * (TRANSFER // 256)).hexdigest()
    assert out.split() == [str(TRANSFER), expected]
    sent = fp.encap_port_counters(site.tap_ifindex, data)
    answered = fp.encap_tunnel_counters(VNI, "192.0.2.2", acks, EncapKind.VXLAN)
    assert sent is not None and answered is not None and answered.packets > 0
    wrapped = fp.encap_stats()[EncapStat.VXLAN_SENT] - before[EncapStat.VXLAN_SENT]
    assert sent.packets >= TRANSFER // (VM_MTU - 40)  # every segment, counted
    assert sent.packets > wrapped  # super-frames were wrapped whole
    assert fp.encap_stats()[EncapStat.FAILED] == 0
