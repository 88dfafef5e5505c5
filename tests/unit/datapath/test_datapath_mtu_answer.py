"""A frame too big for its tunnel, through real bridges and the real sender: the ICMP error is
written back out of the port it came in by (scapy judges it), IPv4 without DF leaves as
fragments (scapy reassembles them from what the tunnel socket was given), other frames are
dropped with their reason, and a flow's plan (the fast path) answers the same as the walk.

No root: the tunnel's raw socket is an in-memory stand-in that records what it is given; the
tunnel port, its one MTU check, the encapsulation and the forwarding are the real ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, defragment
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Raw

from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.datapath.tunnel import TunnelEndpoint
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.packet.offload import describe, partial_checksum

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
GRE_MTU = 1500 - 20 - 8 - 14  # Neutron's GRE network MTU over a 1500-byte underlay


class RecordingSocket:
    """The tunnel's raw socket, in memory: what would have gone to the underlay."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, payload: bytes, _address: object) -> int:
        self.sent.append(payload)
        return len(payload)

    def sendmsg(self, buffers: list[bytes], *_rest: object) -> int:
        self.sent.append(b"".join(buffers))
        return len(self.sent[-1])

    def close(self) -> None:
        pass


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> RecordingSocket:
    sock = RecordingSocket()

    def add(self: TunnelEndpoint, port: TunnelPort) -> None:
        self._ports[port.demux_key] = port
        self.tx.raw[port.protocol] = sock  # type: ignore[assignment]

    def remove(self: TunnelEndpoint, port: TunnelPort) -> None:
        self._ports.pop(port.demux_key, None)
        self.tx.raw.clear()

    monkeypatch.setattr(TunnelEndpoint, "add", add)
    monkeypatch.setattr(TunnelEndpoint, "remove", remove)
    return sock


@pytest.fixture(params=[True, False], ids=["fast-path", "walk"])
def board(request: pytest.FixtureRequest, wire: RecordingSocket) -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    made.fast_path = request.param
    made.add_bridge("br-int")
    made.add_port("br-int", "vm1", PortKind.SYSTEM, tag=5)
    made.add_port("br-int", "patch-tun", PortKind.PATCH, options={"peer": "patch-int"})
    made.add_bridge("br-tun", "secure")
    made.add_port("br-tun", "patch-int", PortKind.PATCH, ofport=1, options={"peer": "patch-tun"})
    made.add_port("br-tun", "gre-1", PortKind.GRE, ofport=2,
                  options={"remote_ip": "192.0.2.2", "key": "flow"})
    gre = made.ports["gre-1"]
    assert isinstance(gre, TunnelPort)
    gre.underlay_mtu, gre.max_inner = 1500, 1500 - gre.overhead  # a 1500-byte underlay
    made.bridges["br-tun"].bridge.add_flows([
        "table=0,priority=1,in_port=1,dl_vlan=5,actions=strip_vlan,set_tunnel:0x64,output:2",
    ])
    yield made
    made.close()
    loop.close()


def _vm1(board: Switchboard) -> list[bytes]:
    port = board.ports["vm1"]
    assert isinstance(port, RecordingPort)
    return port.sent


def _inner(payload: bytes) -> Ether:
    """The Ethernet frame inside what the GRE raw socket was given (scapy decodes GRE)."""
    return Ether(bytes(GRE(payload).payload))


def test_a_ping_with_df_too_big_for_gre_is_answered_with_frag_needed_every_time(
        board: Switchboard, wire: RecordingSocket) -> None:
    ping = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.5", dst="10.0.0.6", flags="DF")
                 / ICMP(type=8, id=3, seq=1) / Raw(b"p" * 1472))
    followed = board.plans.followed
    for _ in range(3):
        board.inject("vm1", ping)
    assert wire.sent == []  # nothing too big reached the underlay
    replies = [Ether(f) for f in _vm1(board)]
    assert len(replies) == 3  # the plan, once made, answers as the walk did
    for reply in replies:
        assert (reply.dst, reply.src) == (VM1, VM2)
        assert (reply[IP].src, reply[IP].dst) == ("10.0.0.6", "10.0.0.5")
        assert (reply[ICMP].type, reply[ICMP].code, reply[ICMP].nexthopmtu) == (3, 4, GRE_MTU)
    if board.fast_path:
        assert board.plans.followed > followed
    service = Service(board)
    drops = service(m.DumpDrops("br-tun"))
    assert drops["bridges"]["br-tun"]["mtu_frag_needed"] == 3
    assert drops["oversize"] == {"gre-1": {"mtu_frag_needed": 3}}
    (port,) = service(m.DumpPorts("br-tun", "gre-1"))
    assert (port["mtu"], port["oversize"], port["tx_dropped"]) == (
        GRE_MTU, {"mtu_frag_needed": 3}, 3)
    # a frame that fits still goes through
    board.inject("vm1", bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.5", dst="10.0.0.6",
                                                          flags="DF") / ICMP() / Raw(b"s")))
    assert len(wire.sent) == 1 and _inner(wire.sent[0])[IP].dst == "10.0.0.6"


def test_ipv6_too_big_for_gre_is_answered_with_packet_too_big(
        board: Switchboard, wire: RecordingSocket) -> None:
    ping = bytes(Ether(src=VM1, dst=VM2) / IPv6(src="fd00::5", dst="fd00::6")
                 / ICMPv6EchoRequest(data=b"q" * 1452))
    board.inject("vm1", ping)
    (reply,) = [Ether(f) for f in _vm1(board)]
    assert (reply[IPv6].src, reply[IPv6].dst) == ("fd00::6", "fd00::5")
    assert reply[ICMPv6PacketTooBig].mtu == GRE_MTU and wire.sent == []
    assert board.bridges["br-tun"].drops == {"mtu_packet_too_big": 1}


def test_ipv4_without_df_leaves_as_fragments_the_far_side_reassembles(
        board: Switchboard, wire: RecordingSocket) -> None:
    datagram = (Ether(src=VM1, dst=VM2) / IP(src="10.0.0.5", dst="10.0.0.6", id=42)
                / UDP(sport=5000, dport=6000) / Raw(b"d" * 4000))
    board.inject("vm1", bytes(datagram))
    assert _vm1(board) == []
    pieces = [_inner(p) for p in wire.sent]
    assert len(pieces) == 3 and all(len(bytes(p)) <= 1500 - 28 for p in pieces)
    assert all(GRE(p).key == 0x64 for p in wire.sent)
    whole = defragment([p[IP] for p in pieces])[0]  # type: ignore[no-untyped-call]
    assert bytes(whole[UDP]) == bytes(datagram[UDP])
    gre = board.ports["gre-1"]
    assert isinstance(gre, TunnelPort)
    assert gre.oversize == {"mtu_fragmented": 1} and gre.stats.tx_packets == 3
    assert board.bridges["br-tun"].drops == {}  # not a drop


def test_an_oversize_frame_that_is_not_ip_is_dropped_with_its_reason(
        board: Switchboard, wire: RecordingSocket) -> None:
    board.inject("vm1", bytes(Ether(src=VM1, dst=VM2, type=0x88B5) / Raw(b"n" * 1600)))
    assert _vm1(board) == [] and wire.sent == []
    assert board.bridges["br-tun"].drops == {"mtu_exceeded": 1}


def test_a_tcp_super_frame_too_big_for_the_tunnel_is_answered_once_and_counted_per_segment(
        board: Switchboard, wire: RecordingSocket) -> None:
    # a guest's TSO super-frame cut for a 1500-byte MTU: each 1514-byte segment is too big for
    # GRE; the sender hears of it once, from the first segment's headers, and every segment
    # is counted (as the kernel's GSO path judges a super-frame by its segments)
    frame = partial_checksum(bytes(
        Ether(src=VM1, dst=VM2) / IP(src="10.0.0.5", dst="10.0.0.6", flags="DF")
        / TCP(sport=40000, dport=5201, flags="A", seq=1000) / Raw(b"t" * (3 * 1460))))
    gso = describe(frame, 1460)
    assert gso.segments == 3
    board.forwarding.reader(board.ports["vm1"], lambda: [(frame, gso)])()
    assert wire.sent == []
    replies = [Ether(f) for f in _vm1(board)]
    # one answer, although a bridge's first walk of the flow cut it into segments
    assert len(replies) == 1
    for reply in replies:
        assert (reply[ICMP].type, reply[ICMP].code, reply[ICMP].nexthopmtu) == (3, 4, GRE_MTU)
        quoted = reply[IPerror]
        assert (quoted.len, quoted.src, quoted.dst) == (1500, "10.0.0.5", "10.0.0.6")
    assert replies[0][TCPerror].seq == 1000
    gre = board.ports["gre-1"]
    assert isinstance(gre, TunnelPort) and gre.oversize == {"mtu_frag_needed": 3}
    # the flow now cached on every bridge, the next super-frame crosses whole: one answer too
    board.forwarding.reader(board.ports["vm1"], lambda: [(frame, gso)])()
    assert len(_vm1(board)) == len(replies) + 1 and wire.sent == []
    assert gre.oversize == {"mtu_frag_needed": 6}


def test_a_frame_flooded_into_two_tunnels_too_small_gets_one_answer(
        board: Switchboard, wire: RecordingSocket) -> None:
    board.add_port("br-tun", "gre-2", PortKind.GRE, ofport=3,
                   options={"remote_ip": "192.0.2.3", "key": "flow"})
    second = board.ports["gre-2"]
    assert isinstance(second, TunnelPort)
    second.underlay_mtu, second.max_inner = 1500, 1500 - second.overhead
    board.bridges["br-tun"].bridge.add_flows([  # table 22's flood, as Neutron's br-tun has it
        "table=0,priority=2,in_port=1,dl_vlan=5,"
        "actions=strip_vlan,set_tunnel:0x64,output:2,output:3",
    ])
    ping = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.5", dst="10.0.0.6", flags="DF")
                 / ICMP(type=8) / Raw(b"f" * 1472))
    board.inject("vm1", ping)
    assert len(_vm1(board)) == 1 and wire.sent == []
    assert board.bridges["br-tun"].drops == {"mtu_frag_needed": 2}  # each tunnel refused it
    assert second.oversize == {"mtu_frag_needed": 1}
