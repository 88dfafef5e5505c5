"""Real frames through Open vSwitch's datapath versus our `Bridge.process()`, on Neutron's br-tun.

`ofproto/trace` simulates; this test does not. Frames built with scapy are injected into OVS's
userspace datapath (`netdev-dummy/receive`): VM frames on patch-int, and real VXLAN / GRE
packets from the peers on the underlay uplink, which OVS decapsulates itself. What OVS sends is
captured on the dummy ports (`options:tx_pcap`) and read back with scapy: VM frames leaving on
patch-int, and tunnel packets leaving on the uplink with their outer destination (which peer),
VNI or GRE key, and inner frame. learn() runs for real, so the sequence covers learning, a MAC
moving between peers, and unknown keys. At the end the flow counters (n_packets, n_bytes) and
the learned flows must be what our bridge has after processing the same frames.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.neutron_br_tun import BrTunHost, Network, Peer, RemotePort, br_tun_flows
from support.ovs import OvsSwitch
from support.ovs_diff import vid_of_key
from support.ovs_packets import mac_int
from support.tools import require_tool
from tunnelnet.switch import Bridge, Output
from tunnelnet.switch.cache import FlowCache

# scapy builds its namespace with star imports that mypy cannot follow; use it as Any.
scapy_all: Any = importlib.import_module("scapy.all")

pytestmark = [pytest.mark.interop, pytest.mark.root]

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

    def inner(self) -> Any:
        sc = scapy_all
        eth = sc.Ether(src=self.src, dst=self.dst)
        if self.vlan is not None:
            eth = eth / sc.Dot1Q(vlan=self.vlan)
        if self.arp_tpa is not None:
            return eth / sc.ARP(op=1, hwsrc=self.src, psrc=ARP_SPA, pdst=self.arp_tpa)
        return eth / sc.IP(src="10.0.0.1", dst="10.0.0.2") / sc.UDP(sport=1000, dport=2000)

    def wire(self, underlay_mac: str) -> tuple[str, bytes]:
        """(dummy port to inject on, bytes)."""
        sc = scapy_all
        inner = self.inner()
        if self.peer is None:
            return "patch-int", bytes(inner)
        outer = sc.Ether(src="02:00:00:00:00:99", dst=underlay_mac) / sc.IP(
            src=self.peer.remote_ip, dst=LOCAL_IP
        )
        if self.peer.kind == "vxlan":
            pkt = outer / sc.UDP(sport=49152, dport=4789) / sc.VXLAN(vni=self.key) / inner
        else:
            pkt = outer / sc.GRE(key_present=1, key=self.key, proto=0x6558) / inner
        return "uplink0", bytes(pkt)

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


@dataclass
class Rig:
    ovs: OvsSwitch
    underlay_mac: str
    patch: Capture
    uplink: Capture


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as ovs:
        assert ovs.rundir is not None
        rundir = ovs.rundir
        ovs.add_bridge(BRIDGE, fail_mode="secure")
        ovs.add_port(
            BRIDGE,
            "patch-int",
            PATCH_INT,
            type="dummy",
            options={"tx_pcap": str(rundir / "patch-int.pcap")},
        )
        ovs.add_underlay(PEER_IPS, local_ip=LOCAL_IP)
        ovs.vsctl("set", "Interface", "uplink0", f"options:tx_pcap={rundir / 'uplink0.pcap'}")
        for peer in PEERS:
            ovs.add_tunnel_port(BRIDGE, peer.port_name, peer.kind, peer.remote_ip, peer.ofport)
        ovs.add_flows(BRIDGE, br_tun_flows(HOST))
        mac = ovs.vsctl("get", "Interface", "br-phy", "mac_in_use").strip().strip('"')
        yield Rig(ovs, mac, Capture(rundir / "patch-int.pcap"), Capture(rundir / "uplink0.pcap"))


def _lookups(ovs: OvsSwitch) -> int:
    text = ovs.appctl("dpctl/show")
    found = re.search(r"lookups: hit:(\d+) missed:(\d+) lost:(\d+)", text)
    if found is None:
        raise AssertionError(f"no lookup counters in dpctl/show: {text!r}")
    return sum(int(n) for n in found.groups())


def inject(rig: Rig, frame: Frame) -> list[Copy]:
    """Send one frame into OVS and return the copies it sent out, as wire descriptors."""
    port, data = frame.wire(rig.underlay_mac)
    # The uplink frame goes through br-phy and then br-tun: both count as datapath lookups
    # only once (the tunnel pop recirculates), so wait for the counter to move, then for the
    # capture files to settle.
    before = _lookups(rig.ovs)
    rig.ovs.appctl("netdev-dummy/receive", port, data.hex())
    deadline = time.monotonic() + 5.0
    while _lookups(rig.ovs) == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"OVS never processed {frame.label}")
        time.sleep(0.01)
    _settle(rig.patch.path, rig.uplink.path)
    copies: list[Copy] = []
    for pkt in rig.patch.new():
        copies.append(("patch-int", *_eth_view(pkt)))
    for pkt in rig.uplink.new():
        # The underlay bridge's own chatter (IPv6 neighbour discovery of the br-phy device)
        # also leaves on the uplink; only packets encapsulated by us come from LOCAL_IP.
        if pkt.haslayer(scapy_all.IP) and pkt[scapy_all.IP].src == LOCAL_IP:
            copies.append(_tunnel_view(pkt))
    return sorted(copies, key=repr)


def _settle(*paths: Path, quiet: float = 0.15, limit: float = 3.0) -> None:
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


def _eth_view(eth: Any) -> tuple[object, ...]:
    sc = scapy_all
    vlan = eth[sc.Dot1Q].vlan if eth.haslayer(sc.Dot1Q) else None
    if eth.haslayer(sc.ARP):
        arp = eth[sc.ARP]
        return (vlan, eth.src, eth.dst, arp.op, arp.psrc, arp.pdst, arp.hwsrc, arp.hwdst)
    return (vlan, eth.src, eth.dst)


def _tunnel_view(pkt: Any) -> Copy:
    sc = scapy_all
    outer_ip = pkt[sc.IP]
    if pkt.haslayer(sc.VXLAN):
        kind, key, inner = "vxlan", pkt[sc.VXLAN].vni, pkt[sc.VXLAN].payload
    elif pkt.haslayer(sc.GRE):
        kind, key, inner = "gre", pkt[sc.GRE].key, pkt[sc.GRE].payload
    else:
        return ("not-a-tunnel-packet", pkt.summary())
    return (outer_ip.dst, kind, key, *_eth_view(inner))


def our_copies(process: Callable[[dict[str, int], int], list[Output]], frame: Frame) -> list[Copy]:
    key, length = frame.key_for_ours()
    copies: list[Copy] = []
    for out in process(key, length):
        mac: tuple[object, ...] = (_mac(out.key["dl_src"]), _mac(out.key["dl_dst"]))
        if "arp_op" in out.key:
            mac += (
                out.key["arp_op"],
                str(ipaddress.IPv4Address(out.key["arp_spa"])),
                str(ipaddress.IPv4Address(out.key["arp_tpa"])),
                _mac(out.key["arp_sha"]),
                _mac(out.key["arp_tha"]),
            )
        if out.port == PATCH_INT:
            copies.append(("patch-int", vid_of_key(out.key), *mac))
        elif out.port in BY_PORT:
            peer = BY_PORT[out.port]
            copies.append((peer.remote_ip, peer.kind, out.key["tun_id"], vid_of_key(out.key), *mac))
        else:
            copies.append(("unexpected-port", out.port))
    return sorted(copies, key=repr)


def _mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


_VOLATILE = re.compile(r"(duration=[0-9.]+s|idle_age=\d+|hard_age=\d+), ")


def _stable(lines: list[str]) -> set[str]:
    return {_VOLATILE.sub("", line) for line in lines}


def _our_bridge(host: BrTunHost = HOST) -> Bridge:
    bridge = Bridge(BRIDGE, fail_mode="secure")
    bridge.add_port("patch-int", PATCH_INT)
    for peer in PEERS:
        bridge.add_port(peer.port_name, peer.ofport)
    bridge.add_flows(br_tun_flows(host))
    return bridge


def test_frames_through_the_ovs_datapath_leave_as_ours_do_and_count_the_same(rig: Rig) -> None:
    """Twice through the sequence, each frame twice: repeats meet OVS's megaflows and our cache.

    Ours runs two ways: the table walk (`Bridge.process`) and the flow cache the vswitchd uses
    (`FlowCache.process`), whose hits replay counters and learning instead of walking. After
    each frame OVS is made to revalidate its cached datapath flows (`revalidator/wait`), as it
    would shortly do by itself, so that a learned move is in force for the next frame.
    """
    rig.ovs.del_flows(BRIDGE)
    rig.ovs.add_flows(BRIDGE, br_tun_flows(HOST))
    walked = _our_bridge()
    cached_bridge = _our_bridge()
    cache = FlowCache(cached_bridge)
    problems: list[str] = []
    # Each frame twice in a row, so that a repeat can be answered from the caches.
    for rnd in (1, 2):
        for frame in (f for f in SEQUENCE for _ in range(2)):
            theirs = inject(rig, frame)
            rig.ovs.appctl("revalidator/wait")
            for name, copies in (
                ("walk", our_copies(walked.process, frame)),
                ("cache", our_copies(cache.process, frame)),
            ):
                if copies != theirs:
                    problems.append(f"pass {rnd} {frame.label}: OVS sent {theirs}, {name} {copies}")
    # Stats reach the OpenFlow rules when the revalidators run; purge makes that happen now.
    rig.ovs.appctl("revalidator/purge")
    theirs_dump = _stable(rig.ovs.dump_flows(BRIDGE, no_stats=False))
    for name, bridge in (("walk", walked), ("cache", cached_bridge)):
        ours_dump = _stable(bridge.dump_flows(stats=True))
        if ours_dump != theirs_dump:
            problems.append(
                f"{name}: counters/learned flows: only in OVS "
                f"{sorted(theirs_dump - ours_dump)}\nonly in ours {sorted(ours_dump - theirs_dump)}"
            )
    assert not problems, "\n".join(problems)
    assert cache.stats.hits > 0, f"no frame was answered from the flow cache: {cache.stats}"


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


def test_arp_responder_and_l2pop_through_the_ovs_datapath_answer_as_ours(rig: Rig) -> None:
    """ARP requests answered by br-tun itself (reply frames compared field by field, for two
    tenants with the same IP), l2pop's known unicast and its limited flood list."""
    rig.ovs.del_flows(BRIDGE)
    rig.ovs.add_flows(BRIDGE, br_tun_flows(L2POP_HOST))
    bridge = _our_bridge(L2POP_HOST)
    problems: list[str] = []
    for frame in L2POP_SEQUENCE:
        theirs = inject(rig, frame)
        ours = our_copies(bridge.process, frame)
        if ours != theirs:
            problems.append(f"{frame.label}: OVS sent {theirs}, ours {ours}")
    assert not problems, "\n".join(problems)
