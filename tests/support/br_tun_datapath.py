"""The frames and the Open vSwitch rig of the br-tun datapath differential tests.

Shared by tests/interop/test_switch_vs_ovs_datapath.py (OVS against our Python bridge) and
tests/interop/test_vswitchd_fastpath_vs_ovs.py (OVS against our vswitchd with the kernel fast
path): the same frames, the same Neutron br-tun flows, and Open vSwitch's userspace datapath
as the oracle, with what it sends read back from its dummy ports' pcaps and reduced to wire
descriptors (`Copy`) that do not depend on who sent them.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.neutron_br_tun import BrTunHost, Network, Peer, RemotePort, br_tun_flows
from support.ovs import OvsSwitch
from support.ovs_packets import mac_int
from support.tools import require_tool

# scapy builds its namespace with star imports that mypy cannot follow; use it as Any.
scapy_all: Any = importlib.import_module("scapy.all")

BRIDGE = "br-tun"
PATCH_INT = 1
LOCAL_IP = "192.0.2.1"
PEER_IPS = ("192.0.2.2", "192.0.2.3", "192.0.2.4")
PEERS = tuple(
    [Peer("vxlan", ip, 2 + n) for n, ip in enumerate(PEER_IPS)]
    + [Peer("gre", ip, 5 + n) for n, ip in enumerate(PEER_IPS)]
)
BY_PORT = {p.ofport: p for p in PEERS}
VNI_A, KEY_B = 100, 1001
HOST = BrTunHost(
    PATCH_INT, [Network("vxlan", VNI_A, 1), Network("gre", KEY_B, 2)], PEERS, cookie=0x5EED
)
ARP_SPA = "10.0.0.11"
LOCAL_VM = "fa:16:3e:00:01:01"
MOVER = "fa:16:3e:00:03:01"
VM_B = "fa:16:3e:00:04:01"

# A copy as seen on a wire: ("patch-int", vlan, src, dst) or (peer ip, kind, key, vlan, src, dst)
Copy = tuple[object, ...]


@dataclass(frozen=True)
class Frame:
    """One frame arriving at br-tun: from patch-int (a VM frame) or from a tunnel peer."""

    label: str
    src: str
    dst: str
    vlan: int | None = None
    peer: Peer | None = None  # arrives through this tunnel
    key: int = 0  # VNI / GRE key it arrives with
    arp_tpa: str | None = None  # an ARP request for this address instead of a UDP packet

    def inner(self, *, tagged: bool = True) -> Any:
        """The frame as br-tun gets it (``tagged=False``: without its VLAN tag, as the VM
        sent it before br-int tagged it)."""
        sc = scapy_all
        eth = sc.Ether(src=self.src, dst=self.dst)
        if self.vlan is not None and tagged:
            eth = eth / sc.Dot1Q(vlan=self.vlan)
        if self.arp_tpa is not None:
            return eth / sc.ARP(op=1, hwsrc=self.src, psrc=ARP_SPA, pdst=self.arp_tpa)
        # 18 bytes of data: Ethernet's 60-byte minimum without a tag, as a NIC pads it (and
        # the size from which our datapath makes plans, coalesce.signature)
        udp = sc.UDP(sport=1000, dport=2000) / sc.Raw(bytes(18))
        return eth / sc.IP(src="10.0.0.1", dst="10.0.0.2") / udp

    def encapsulated(self, dst_mac: str) -> Any:
        """A tunnel frame as its peer puts it on the underlay, to ``dst_mac``."""
        sc = scapy_all
        if self.peer is None:
            raise ValueError(f"{self.label} does not come from a tunnel")
        outer = sc.Ether(src="02:00:00:00:00:99", dst=dst_mac) / sc.IP(
            src=self.peer.remote_ip, dst=LOCAL_IP
        )
        if self.peer.kind == "vxlan":
            # RFC 7348's header: the I flag, all else zero (scapy's default sets VXLAN-GPE's
            # next-protocol bits, reserved in RFC 7348, which Linux's vxlan device drops)
            vxlan = sc.VXLAN(flags=0x08, vni=self.key)
            return outer / sc.UDP(sport=49152, dport=4789) / vxlan / self.inner()
        return outer / sc.GRE(key_present=1, key=self.key, proto=0x6558) / self.inner()

    def wire(self, underlay_mac: str) -> tuple[str, bytes]:
        """(dummy port to inject on, bytes)."""
        if self.peer is None:
            return "patch-int", bytes(self.inner())
        return "uplink0", bytes(self.encapsulated(underlay_mac))

    def key_for_ours(self) -> tuple[dict[str, int], int]:
        """Our flow key for the frame as br-tun sees it, and its length (inner frame)."""
        key = {
            "in_port": self.peer.ofport if self.peer else PATCH_INT,
            "tun_id": self.key,
            "vlan_tci": (0x1000 | self.vlan) if self.vlan is not None else 0,
            "dl_src": mac_int(self.src),
            "dl_dst": mac_int(self.dst),
            "dl_type": 0x0800,
            "nw_src": 0x0A000001,
            "nw_dst": 0x0A000002,
            "nw_proto": 17,
            "nw_tos": 0,
            "nw_ecn": 0,
            "nw_ttl": 64,
            "tp_src": 1000,
            "tp_dst": 2000,
        }
        if self.arp_tpa is not None:
            for name in [k for k in key if k.startswith(("nw_", "tp_"))]:
                del key[name]
            key.update(
                dl_type=0x0806,
                arp_op=1,
                arp_spa=int(ipaddress.IPv4Address(ARP_SPA)),
                arp_tpa=int(ipaddress.IPv4Address(self.arp_tpa)),
                arp_sha=mac_int(self.src),
                arp_tha=0,
            )
        return key, len(bytes(self.inner()))


SEQUENCE = [
    Frame("vm-speaks-from-peer-3", MOVER, LOCAL_VM, peer=BY_PORT[3], key=VNI_A),
    Frame("reply-to-learned-peer-3", LOCAL_VM, MOVER, vlan=1),
    Frame("broadcast-floods-vxlan-peers", LOCAL_VM, "ff:ff:ff:ff:ff:ff", vlan=1),
    Frame("unknown-vni-dropped", MOVER, LOCAL_VM, peer=BY_PORT[2], key=VNI_A + 1),
    Frame("gre-network-learns", VM_B, LOCAL_VM, peer=BY_PORT[7], key=KEY_B),
    Frame("reply-over-gre", LOCAL_VM, VM_B, vlan=2),
    Frame("vm-moved-to-peer-2", MOVER, "ff:ff:ff:ff:ff:ff", peer=BY_PORT[2], key=VNI_A),
    Frame("reply-follows-the-move", LOCAL_VM, MOVER, vlan=1),
    Frame("vxlan-key-on-gre-dropped", VM_B, LOCAL_VM, peer=BY_PORT[7], key=VNI_A),
]

L2POP_HOST = BrTunHost(
    PATCH_INT,
    [Network("vxlan", VNI_A, 1, flood_to=("192.0.2.2", "192.0.2.4")), Network("gre", KEY_B, 2)],
    PEERS,
    [
        RemotePort(VNI_A, "fa:16:3e:00:02:01", "10.0.0.21", "192.0.2.2"),
        RemotePort(KEY_B, "fa:16:3e:00:04:01", "10.0.0.21", "192.0.2.4"),  # same IP, tenant B
    ],
    l2pop=True,
    arp_responder=True,
    cookie=0x5EED,
)
L2POP_SEQUENCE = [
    Frame("arp-answered-by-br-tun", LOCAL_VM, "ff:ff:ff:ff:ff:ff", vlan=1, arp_tpa="10.0.0.21"),
    Frame(
        "same-ip-other-tenant-answer", LOCAL_VM, "ff:ff:ff:ff:ff:ff", vlan=2, arp_tpa="10.0.0.21"
    ),
    Frame(
        "arp-unknown-floods-l2pop-peers", LOCAL_VM, "ff:ff:ff:ff:ff:ff", vlan=1, arp_tpa="10.0.0.99"
    ),
    Frame("unicast-to-l2pop-entry", LOCAL_VM, "fa:16:3e:00:02:01", vlan=1),
    Frame("from-peer-with-l2pop", "fa:16:3e:00:02:01", LOCAL_VM, peer=BY_PORT[2], key=VNI_A),
]


class Capture:
    """Frames OVS sent out of a dummy port, read from its tx_pcap as they accumulate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def new(self) -> list[Any]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        packets = list(scapy_all.rdpcap(str(self.path)))
        fresh = packets[self.seen :]
        self.seen = len(packets)
        return fresh


# br-int in front of br-tun, for a datapath that takes only untagged frames from its VM ports
# (the kernel fast path): each network's VM port is an access port of its local VLAN, which
# br-int pushes towards br-tun and pops towards the VM. Same ports and flows on both switches.
VM_PORTS = {1: "vm-a", 2: "vm-b"}  # local VLAN -> VM port (its OpenFlow number is the VLAN)
PATCH_TUN = 3  # br-int's patch port to br-tun
BR_INT_FLOWS = [
    *(f"priority=10,in_port={vlan} actions=mod_vlan_vid:{vlan},output:{PATCH_TUN}"
      for vlan in VM_PORTS),
    *(f"priority=10,in_port={PATCH_TUN},dl_vlan={vlan} actions=strip_vlan,output:{vlan}"
      for vlan in VM_PORTS),
    "priority=0 actions=drop",
]


def vm_port_copy(vlan: int | None, eth: Any) -> Copy:
    """A frame leaving towards the VMs, as the frame br-tun sent to patch-int: ``vlan`` None
    for patch-int itself, else the local VLAN of the VM port it left on (untagged there)."""
    if vlan is None:
        return ("patch-int", *eth_view(eth))
    if eth.haslayer(scapy_all.Dot1Q):  # br-int must have taken the tag off
        return (f"tagged-out-of-the-vlan-{vlan}-vm-port", *eth_view(eth))
    return ("patch-int", vlan, *eth_view(eth)[1:])


def vm_port_of(frame: Frame) -> str:
    if frame.vlan not in VM_PORTS:
        raise ValueError(f"{frame.label}: no VM port for VLAN {frame.vlan}")
    return VM_PORTS[frame.vlan]


@dataclass
class Rig:
    ovs: OvsSwitch
    underlay_mac: str
    vm_side: dict[str, tuple[Capture, int | None]]  # port -> its capture, local VLAN
    uplink: Capture
    with_br_int: bool = False


@contextmanager
def ovs_rig(*, with_br_int: bool = False) -> Iterator[Rig]:
    """Open vSwitch with br-tun: patch-int a dummy port (``with_br_int``: a patch port to
    br-int, whose VM ports are dummy ports), the six tunnels on an underlay whose uplink is a
    dummy port too; all of them record what OVS sends on them."""
    require_tool("ovs-vswitchd")
    with OvsSwitch() as ovs:
        assert ovs.rundir is not None
        rundir = ovs.rundir
        ovs.add_bridge(BRIDGE, fail_mode="secure")
        vm_side: dict[str, tuple[Capture, int | None]] = {}
        if with_br_int:
            ovs.add_bridge("br-int", fail_mode="secure")
            for vlan, name in VM_PORTS.items():
                pcap = rundir / f"{name}.pcap"
                ovs.add_port("br-int", name, vlan, type="dummy", options={"tx_pcap": str(pcap)})
                vm_side[name] = (Capture(pcap), vlan)
            ovs.add_port("br-int", "patch-tun", PATCH_TUN, type="patch",
                         options={"peer": "patch-int"})
            ovs.add_port(BRIDGE, "patch-int", PATCH_INT, type="patch",
                         options={"peer": "patch-tun"})
            ovs.add_flows("br-int", BR_INT_FLOWS)
        else:
            pcap = rundir / "patch-int.pcap"
            ovs.add_port(BRIDGE, "patch-int", PATCH_INT, type="dummy",
                         options={"tx_pcap": str(pcap)})
            vm_side["patch-int"] = (Capture(pcap), None)
        ovs.add_underlay(PEER_IPS, local_ip=LOCAL_IP)
        ovs.vsctl("set", "Interface", "uplink0", f"options:tx_pcap={rundir / 'uplink0.pcap'}")
        for peer in PEERS:
            ovs.add_tunnel_port(BRIDGE, peer.port_name, peer.kind, peer.remote_ip, peer.ofport)
        ovs.add_flows(BRIDGE, br_tun_flows(HOST))
        mac = ovs.vsctl("get", "Interface", "br-phy", "mac_in_use").strip().strip('"')
        yield Rig(ovs, mac, vm_side, Capture(rundir / "uplink0.pcap"), with_br_int)


def lookups(ovs: OvsSwitch) -> int:
    text = ovs.appctl("dpctl/show")
    found = re.search(r"lookups: hit:(\d+) missed:(\d+) lost:(\d+)", text)
    if found is None:
        raise AssertionError(f"no lookup counters in dpctl/show: {text!r}")
    return sum(int(n) for n in found.groups())


def inject(rig: Rig, frame: Frame) -> list[Copy]:
    """Send one frame into OVS and return the copies it sent out, as wire descriptors."""
    if rig.with_br_int and frame.peer is None:
        port, data = vm_port_of(frame), bytes(frame.inner(tagged=False))
    else:
        port, data = frame.wire(rig.underlay_mac)
    # The uplink frame goes through br-phy and then br-tun: both count as datapath lookups
    # only once (the tunnel pop recirculates), so wait for the counter to move, then for the
    # capture files to settle.
    before = lookups(rig.ovs)
    rig.ovs.appctl("netdev-dummy/receive", port, data.hex())
    deadline = time.monotonic() + 5.0
    while lookups(rig.ovs) == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"OVS never processed {frame.label}")
        time.sleep(0.01)
    settle(*(capture.path for capture, _ in rig.vm_side.values()), rig.uplink.path)
    copies: list[Copy] = []
    for capture, vlan in rig.vm_side.values():
        copies += [vm_port_copy(vlan, pkt) for pkt in capture.new()]
    for pkt in rig.uplink.new():
        # The underlay bridge's own chatter (IPv6 neighbour discovery of the br-phy device)
        # also leaves on the uplink; only packets encapsulated by us come from LOCAL_IP.
        if pkt.haslayer(scapy_all.IP) and pkt[scapy_all.IP].src == LOCAL_IP:
            copies.append(tunnel_view(pkt))
    return sorted(copies, key=repr)


def settle(*paths: Path, quiet: float = 0.15, limit: float = 3.0) -> None:
    """Wait (bounded) until the capture files have stopped growing for `quiet` seconds."""

    def sizes() -> list[int]:
        return [p.stat().st_size if p.exists() else 0 for p in paths]

    deadline = time.monotonic() + limit
    last, since = sizes(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = sizes()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def eth_view(eth: Any) -> tuple[object, ...]:
    """(vlan, src, dst), and the ARP fields for ARP."""
    sc = scapy_all
    vlan = eth[sc.Dot1Q].vlan if eth.haslayer(sc.Dot1Q) else None
    if eth.haslayer(sc.ARP):
        arp = eth[sc.ARP]
        return (vlan, eth.src, eth.dst, arp.op, arp.psrc, arp.pdst, arp.hwsrc, arp.hwdst)
    return (vlan, eth.src, eth.dst)


def tunnel_view(pkt: Any) -> Copy:
    """(peer, kind, key, *the inner frame's eth_view) of a tunnel packet."""
    sc = scapy_all
    outer_ip = pkt[sc.IP]
    if pkt.haslayer(sc.VXLAN):
        kind, key, inner = "vxlan", pkt[sc.VXLAN].vni, pkt[sc.VXLAN].payload
    elif pkt.haslayer(sc.GRE):
        kind, key, inner = "gre", pkt[sc.GRE].key, pkt[sc.GRE].payload
    else:
        return ("not-a-tunnel-packet", pkt.summary())
    return (outer_ip.dst, kind, key, *eth_view(inner))


_VOLATILE = re.compile(r"(duration=[0-9.]+s|idle_age=\d+|hard_age=\d+), ")


def stable(lines: list[str]) -> set[str]:
    """dump-flows lines without the fields that depend on when they are read."""
    return {_VOLATILE.sub("", line) for line in lines}
