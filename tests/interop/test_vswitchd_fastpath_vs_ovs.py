"""Real packets through our `tunnelnet vswitchd --fastpath kernel` against Open vSwitch's
datapath, on Neutron's br-tun (issue #22: the fast path's fates and counters are Open
vSwitch's).

The frames, flows and oracle are those of tests/interop/test_switch_vs_ovs_datapath.py
(support/br_tun_datapath.py), with br-int in front of br-tun on both switches: the kernel
takes only untagged frames from VM ports, so each network has a VM port, an access port of its
local VLAN (br-int pushes it towards br-tun and pops it towards the VM). Ours runs in a
namespace of its own with real devices: the VM ports are veths whose other ends sit in a VM
namespace, where the test sends with an AF_PACKET socket and captures; the six tunnels (VXLAN
and GRE to three peers) leave by a veth into an underlay namespace, where the test sends the
peers' VXLAN and GRE packets and captures what ours sends, decoded by scapy. Open vSwitch gets
the same frames on dummy ports (`netdev-dummy/receive`) and records what it sends.

Each frame goes several times in a row, so that its repeats are replayed by the kernel where
it can (one output, nothing learned anew): every copy on the wires must be what Open vSwitch
sent for the same frame, the kernel's replay counters must have risen in each direction, and
at the end dump-flows (counters, learned flows) must be Open vSwitch's.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from support.br_tun_datapath import (
    BR_INT_FLOWS,
    BRIDGE,
    HOST,
    L2POP_HOST,
    L2POP_SEQUENCE,
    LOCAL_IP,
    PATCH_INT,
    PATCH_TUN,
    PEER_IPS,
    PEERS,
    SEQUENCE,
    VM_PORTS,
    Capture,
    Copy,
    Frame,
    Rig,
    eth_view,
    inject,
    lookups,
    ovs_rig,
    scapy_all,
    settle,
    stable,
    tunnel_view,
    vm_port_copy,
    vm_port_of,
)
from support.netns import Lab, inside, run
from support.neutron_br_tun import BrTunHost, br_tun_flows
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT

pytestmark = [pytest.mark.netns, pytest.mark.interop]

REPEATS = 3  # each frame in a row: the first walks (and learns), the later ones can replay
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID = 0x10
DIRECTIONS = ("vm->vxlan", "vm->gre", "vxlan->vm", "gre->vm")
# a third bridge on both switches: NORMAL between three VM ports, for MAC learning and moves
MAC_BRIDGE = "br-mac"
MAC_PORTS = ("m1", "m2", "m3")  # OpenFlow 1, 2, 3
MAC_FLOWS = ["priority=0 actions=NORMAL"]

class Wire:
    """An AF_PACKET socket on one interface: frames sent there, frames that arrive there.

    The kernel takes an 802.1Q tag out of a received frame into the packet's metadata
    (PACKET_AUXDATA gives it back): put back, so that a tag ours left on a frame shows."""

    def __init__(self, ns: str, ifname: str) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((ifname, 0))
            sock.setblocking(False)
            return sock

        self.ifname = ifname
        self.sock = inside(ns, make)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def received(self) -> list[bytes]:
        """Every frame that arrived since the last call (not those sent from here)."""
        frames = []
        while True:
            try:
                data, ancillary, _, address = self.sock.recvmsg(65536, 64)
            except BlockingIOError:
                return frames
            if address[2] == PACKET_OUTGOING:
                continue
            for level, kind, aux in ancillary:
                if (level, kind) != (SOL_PACKET, PACKET_AUXDATA) or len(aux) < 20:
                    continue
                status, _, _, _, _, tci, tpid = struct.unpack("=IIIHHHH", aux[:20])
                if status & TP_STATUS_VLAN_VALID:
                    tag = struct.pack("!HH", tpid or 0x8100, tci)
                    data = data[:12] + tag + data[12:]
            frames.append(data)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Ours:
    sw: Vswitchd
    vm: dict[str, Wire]  # by VM port name: the VM's end
    underlay: Wire  # the peers' end of our uplink
    uplink_mac: str
    mac_ports: dict[str, Wire]  # br-mac's ports, by name: the VMs' ends

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sw.call(m.DatapathStats())
        return stats

    def rx(self, bridge: str, port: str) -> int:
        # a control request folds the kernel's counters first: frames it forwarded count
        ports = self.sw.call(m.DumpPorts(bridge, port))
        return int(ports[0]["rx_packets"])

    def copies(self) -> list[Copy]:
        """What left ours on the wires since the last call, as wire descriptors."""
        got: list[Copy] = []
        for name, wire in self.vm.items():
            vlan = next(v for v, n in VM_PORTS.items() if n == name)
            got += [vm_port_copy(vlan, scapy_all.Ether(f)) for f in wire.received()]
        for name, wire in self.mac_ports.items():
            got += [(name, *eth_view(scapy_all.Ether(f))) for f in wire.received()]
        for data in self.underlay.received():
            pkt = scapy_all.Ether(data)
            # our host's own chatter aside (ARP, IPv6): only what it encapsulated counts
            if pkt.haslayer(scapy_all.IP) and pkt[scapy_all.IP].src == LOCAL_IP:
                got.append(tunnel_view(pkt))
        return got


def _ns_quiet(ns: str) -> None:
    """No IPv6 (its router solicitations and MLD reports would enter the switch as frames of
    their own and be counted) in a namespace, for the interfaces made or moved there later."""
    run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
         "net.ipv6.conf.default.disable_ipv6=1"], netns=ns)


def _mac(ns: str, ifname: str) -> str:
    shown = json.loads(run(["ip", "-n", ns, "-j", "link", "show", ifname]).stdout)
    return str(shown[0]["address"])


def _configure(sw: Vswitchd) -> None:
    for bridge in ("br-int", BRIDGE):
        sw.call(m.AddBridge(bridge, fail_mode="secure"))
    for vlan, name in VM_PORTS.items():
        sw.call(m.AddPort("br-int", name, ofport=vlan))
    sw.call(m.AddPort("br-int", "patch-tun", "patch", ofport=PATCH_TUN,
                      options={"peer": "patch-int"}))
    sw.call(m.AddPort(BRIDGE, "patch-int", "patch", ofport=PATCH_INT,
                      options={"peer": "patch-tun"}))
    for peer in PEERS:  # as Neutron makes them: the key from the flow, our address
        sw.call(m.AddPort(BRIDGE, peer.port_name, peer.kind, ofport=peer.ofport,
                          options={"remote_ip": peer.remote_ip, "local_ip": LOCAL_IP,
                                   "key": "flow"}))
    sw.call(m.AddBridge(MAC_BRIDGE, fail_mode="secure"))
    for ofport, name in enumerate(MAC_PORTS, start=1):
        sw.call(m.AddPort(MAC_BRIDGE, name, ofport=ofport))
    sw.call(m.AddFlows(MAC_BRIDGE, MAC_FLOWS))


@pytest.fixture(scope="module")
def ours() -> Iterator[Ours]:
    if not REPLAY_OBJECT.exists():
        pytest.fail(f"{REPLAY_OBJECT} is not built: run `make bpf`")
    made = Lab()
    wires: list[Wire] = []
    sw: Vswitchd | None = None
    try:
        hv, ul, vm = made.netns("hv"), made.netns("ul"), made.netns("vm")
        for ns in (hv, ul, vm):
            _ns_quiet(ns)
        # the peers' addresses live nowhere: our host reaches them by static neighbours, so
        # the underlay namespace only watches (no stack of its own to answer with ICMP)
        made.veth(hv, "eth0", ul, "ul0")
        made.addr(hv, "eth0", f"{LOCAL_IP}/24")
        ul_mac = _mac(ul, "ul0")
        for ip in PEER_IPS:
            run(["ip", "-n", hv, "neigh", "replace", ip, "lladdr", ul_mac, "dev", "eth0",
                 "nud", "permanent"])
        for name in (*VM_PORTS.values(), *MAC_PORTS):
            made.veth(hv, name, vm, name)
            made.offloads_off(vm, name)
            made.offloads_off(hv, name)
        sw = Vswitchd(hv, fastpath="kernel")
        sw.start()
        _configure(sw)
        vm_wires = {name: Wire(vm, name) for name in VM_PORTS.values()}
        mac_wires = {name: Wire(vm, name) for name in MAC_PORTS}
        underlay = Wire(ul, "ul0")
        wires += [*vm_wires.values(), *mac_wires.values(), underlay]
        got = Ours(sw, vm_wires, underlay, _mac(hv, "eth0"), mac_wires)
        assert got.stats()["fastpath"]["mode"] == "kernel"
        yield got
    finally:
        for wire in wires:
            wire.close()
        if sw is not None:
            sw.close()
        made.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with ovs_rig(with_br_int=True) as made:
        ovs = made.ovs
        assert ovs.rundir is not None
        ovs.add_bridge(MAC_BRIDGE, fail_mode="secure")
        for ofport, name in enumerate(MAC_PORTS, start=1):
            ovs.add_port(MAC_BRIDGE, name, ofport, type="dummy",
                         options={"tx_pcap": str(ovs.rundir / f"{name}.pcap")})
        ovs.add_flows(MAC_BRIDGE, MAC_FLOWS)
        yield made


def _load(rig: Rig, ours: Ours, host: BrTunHost) -> None:
    """The same flows, and fresh counters, on both switches."""
    for bridge, flows in (("br-int", BR_INT_FLOWS), (BRIDGE, br_tun_flows(host))):
        rig.ovs.del_flows(bridge)
        rig.ovs.add_flows(bridge, flows)
        ours.sw.call(m.DelFlows(bridge))
        ours.sw.call(m.AddFlows(bridge, flows))


def _collect(ours: Ours, expected: int, got: list[Copy] | None = None) -> list[Copy]:
    """The copies on the wires until at least ``expected`` came and then a moment passed
    without more (bounded: a missing or extra copy is a finding, not a hang)."""
    copies = list(got or [])
    deadline = time.monotonic() + 5.0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        fresh = ours.copies()
        if fresh:
            copies += fresh
            quiet_since = time.monotonic()
        elif len(copies) >= expected and time.monotonic() - quiet_since >= 0.2:
            break
    return sorted(copies, key=repr)


def send_ours(ours: Ours, frame: Frame, expected: int) -> list[Copy]:
    """Send one frame into ours as a real packet; the copies it sent, once it took the frame
    (its arrival port counted it) and the wires have given at least ``expected`` copies and
    then stayed quiet a moment (bounded: a missing or extra copy is a finding, not a hang)."""
    if frame.peer is None:
        bridge, port = "br-int", vm_port_of(frame)
        before = ours.rx(bridge, port)
        ours.vm[port].send(bytes(frame.inner(tagged=False)))
    else:
        bridge, port = BRIDGE, frame.peer.port_name
        before = ours.rx(bridge, port)
        ours.underlay.send(bytes(frame.encapsulated(ours.uplink_mac)))
    deadline = time.monotonic() + 10.0
    while ours.rx(bridge, port) == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"ours never took {frame.label} on {port}")
        time.sleep(0.02)
    return _collect(ours, expected, ours.copies())


def _replays(ours: Ours) -> dict[str, int]:
    """The kernel's replays by direction (ofctl dp-stats: its port and tunnel hits count
    VXLAN and GRE together, the GRE ones also on their own)."""
    stats = ours.stats()
    return {
        "vm->vxlan": stats["kernel_port_hits"] - stats["kernel_gre_sent"],
        "vm->gre": stats["kernel_gre_sent"],
        "vxlan->vm": stats["kernel_tunnel_hits"] - stats["kernel_gre_received"],
        "gre->vm": stats["kernel_gre_received"],
    }


def _direction(frame: Frame, theirs: list[Copy]) -> str | None:
    """The direction in which the kernel can replay the frame's repeats: IPv4 (plans are
    made for IPv4) with one copy out, between a VM port and a tunnel; else None."""
    if frame.arp_tpa is not None or len(theirs) != 1:
        return None
    if frame.peer is not None:
        return f"{frame.peer.kind}->vm" if theirs[0][0] == "patch-int" else None
    return f"vm->{theirs[0][1]}" if theirs[0][0] != "patch-int" else None


def _run(rig: Rig, ours: Ours, sequence: list[Frame], rounds: int) -> tuple[list[str],
                                                                               dict[str, int]]:
    """Every frame REPEATS times in a row, through both; the differences found (also a
    frame whose repeats the kernel could have replayed but did not), and the kernel's
    replays per frame label and direction."""
    problems: list[str] = []
    replayed: dict[str, int] = {}
    for rnd in range(1, rounds + 1):
        for frame in sequence:
            before = _replays(ours)
            theirs: list[Copy] = []
            for copy in range(1, REPEATS + 1):
                theirs = inject(rig, frame)
                rig.ovs.appctl("revalidator/wait")
                mine = send_ours(ours, frame, len(theirs))
                if mine != theirs:
                    problems.append(f"pass {rnd} {frame.label} copy {copy}: OVS sent "
                                    f"{theirs}, ours {mine}")
            after = _replays(ours)
            delta = {d: after[d] - before[d] for d in DIRECTIONS if after[d] > before[d]}
            for direction, count in delta.items():
                key = f"{frame.label} {direction}"
                replayed[key] = replayed.get(key, 0) + count
            expected = _direction(frame, theirs)
            if expected is not None and expected not in delta:
                problems.append(f"pass {rnd} {frame.label}: no repeat replayed {expected} "
                                f"in the kernel (replays {delta})")
    return problems, replayed


def _same_flows(rig: Rig, ours: Ours, problems: list[str]) -> None:
    # Stats reach the OpenFlow rules when the revalidators run; purge makes that happen now.
    rig.ovs.appctl("revalidator/purge")
    for bridge in ("br-int", BRIDGE):
        theirs = stable(rig.ovs.dump_flows(bridge, no_stats=False))
        mine = stable(ours.sw.call(m.DumpFlows(bridge)))
        if mine != theirs:
            problems.append(f"{bridge}: counters/learned flows: only in OVS "
                            f"{sorted(theirs - mine)}\nonly in ours {sorted(mine - theirs)}")


def test_frames_replayed_by_the_kernel_leave_and_count_as_in_open_vswitch(
        rig: Rig, ours: Ours) -> None:
    """Learning, a MAC moving between peers, floods, unknown keys, VXLAN and GRE: twice
    through the sequence, each frame REPEATS times. After each frame OVS revalidates its
    datapath flows (`revalidator/wait`), so that a learned move is in force for the next."""
    _load(rig, ours, HOST)
    problems, replayed = _run(rig, ours, SEQUENCE, rounds=2)
    _same_flows(rig, ours, problems)
    assert not problems, "\n".join(problems)
    totals = {d: sum(n for k, n in replayed.items() if k.endswith(d)) for d in DIRECTIONS}
    print(f"\nreplayed in the kernel, by frame and direction: {replayed}")
    # every direction of the tunnels carried repeats in the kernel (not only in Python)
    assert all(totals.values()), (totals, replayed, ours.stats())
    # VXLAN out of the VM ports was written by the programs themselves (its copies are the
    # ones compared with OVS's above), not by the collect_md device
    assert ours.stats()["kernel_vxlan_sent"] > 0, ours.stats()

def test_arp_responder_and_l2pop_answer_as_open_vswitch_with_the_kernel_path(
        rig: Rig, ours: Ours) -> None:
    """ARP requests answered by br-tun (the reply out of the port the request came in on,
    for two tenants with the same IP), l2pop's known unicast and its limited flood list."""
    _load(rig, ours, L2POP_HOST)
    problems, replayed = _run(rig, ours, L2POP_SEQUENCE, rounds=1)
    _same_flows(rig, ours, problems)
    assert not problems, "\n".join(problems)
    # the known unicast goes out by VXLAN in the kernel, and what comes back from it too
    assert set(replayed) == {"unicast-to-l2pop-entry vm->vxlan",
                             "from-peer-with-l2pop vxlan->vm"}, replayed


def _udp_frame(src: str, dst: str) -> bytes:
    sc = scapy_all
    return bytes(sc.Ether(src=src, dst=dst) / sc.IP(src="10.0.9.1", dst="10.0.9.2")
                 / sc.UDP(sport=1000, dport=2000) / sc.Raw(bytes(18)))


def _ovs_mac_inject(rig: Rig, port: str, data: bytes) -> list[Copy]:
    ovs = rig.ovs
    assert ovs.rundir is not None
    captures = {name: Capture(ovs.rundir / f"{name}.pcap") for name in MAC_PORTS}
    for capture in captures.values():  # only what this frame makes
        capture.new()
    before = lookups(ovs)
    ovs.appctl("netdev-dummy/receive", port, data.hex())
    deadline = time.monotonic() + 5.0
    while lookups(ovs) == before:
        assert time.monotonic() < deadline, f"OVS never processed a frame on {port}"
        time.sleep(0.01)
    settle(*(c.path for c in captures.values()))
    ovs.appctl("revalidator/wait")
    return sorted([(name, *eth_view(pkt)) for name, c in captures.items() for pkt in c.new()],
                  key=repr)


def _fdb(lines: list[str]) -> list[tuple[str, str, str]]:
    """fdb/show without the ages: (port, VLAN, MAC) in last-seen order."""
    return [tuple(line.split()[:3]) for line in lines[1:] if line.strip()]  # type: ignore[misc]


def test_a_mac_that_moves_right_after_the_kernel_carried_it_is_where_open_vswitch_has_it(
        rig: Rig, ours: Ours) -> None:
    """NORMAL on br-mac: Y talks to X from m2, its repeats replayed by the kernel, and at
    once Y speaks from m3 (it moved: a walk), before anything folds the kernel's counters (a
    control request or housekeeping, each second); the round's check then folds them as of
    their last use, older than the move. Y must stay on m3, and X's next frame to Y go
    there, as Open vSwitch has it. (Before MacTable.learn kept the later sighting, X's frame
    went to m2. Should housekeeping fold in between, this proves nothing that time, never
    fails for it: test_kernel_mirror_equivalence.py has the case without timing.)"""
    x, y = "fa:16:3e:00:09:01", "fa:16:3e:00:09:02"
    # (frames sent back to back, 20 ms apart): the first Y->X walks and makes the plan, the
    # next ones are the kernel's, the one from m3 the move
    groups = [[("m1", _udp_frame(x, y))], [("m2", _udp_frame(y, x))],
              [*[("m2", _udp_frame(y, x))] * 3, ("m3", _udp_frame(y, x))],
              [("m1", _udp_frame(x, y))]]
    before = ours.stats()["kernel_port_hits"]
    problems = []
    ours.copies()
    for n, group in enumerate(groups):
        theirs = sorted([c for port, data in group for c in _ovs_mac_inject(rig, port, data)],
                        key=repr)
        # no control request on the way: it would fold the kernel's counters first
        for port, data in group:
            ours.mac_ports[port].send(data)
            time.sleep(0.02)
        mine = _collect(ours, len(theirs))
        if mine != theirs:
            problems.append(f"frames {n}: OVS sent {theirs}, ours {mine}")
    replayed = ours.stats()["kernel_port_hits"] - before
    theirs_fdb = _fdb(rig.ovs.appctl("fdb/show", MAC_BRIDGE).splitlines())
    mine_fdb = _fdb(ours.sw.call(m.FdbShow(MAC_BRIDGE))["fdb"])
    assert not problems, "\n".join(problems)
    assert sorted(mine_fdb) == sorted(theirs_fdb)
    assert replayed >= 1, "the kernel carried none of Y's repeats: nothing was folded late"
