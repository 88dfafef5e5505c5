"""Linux's own GSO as the judge of segment_tcp and coalesce_tcp.

A veth pair gsotx <-> gsorx in a throw-away namespace, with segmentation and checksum offload
OFF on gsotx (``ethtool -K gsotx tso off gso off tx off``): a super-frame written to an
AF_PACKET socket on gsotx with a virtio-net header (PACKET_VNET_HDR: NEEDS_CSUM, gso_type
TCPV4/TCPV6, gso_size = mss) must be cut and checksummed by the kernel in software
(tcp_gso_segment, inet_gso_segment / ipv6_gso_segment, skb_checksum_help), and a plain
AF_PACKET socket on gsorx reads what it put on the wire. Those frames must be segment_tcp's,
byte for byte. The other way round, frames coalesced by coalesce_tcp and handed to the kernel
the same way must come out as the segments they were made of.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from support.netns import inside, lab, run
from support.tcp_frames import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    Flow,
    expected_segments,
    frame,
    super_frame,
)
from tunnelnet.packet.coalesce import coalesce_tcp
from tunnelnet.packet.offload import Gso, SuperFrame, describe, partial_checksum, segment_tcp

pytestmark = [pytest.mark.netns, pytest.mark.root]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
VNET = struct.Struct("=BBHHHH")  # struct virtio_net_hdr, host byte order (vnet_hdr_sz 10)
NEEDS_CSUM = 1
GSO_ECN = 0x80
AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
WAIT = 5.0  # seconds the frames of one super-frame may take to show up
QUIET = 0.3  # seconds of silence that say no further frame is coming
MTU = 9000
PAYLOAD = bytes(range(3, 256)) * 300


@dataclass
class Wire:
    tx: socket.socket  # AF_PACKET on gsotx, with virtio-net headers
    rx: socket.socket  # AF_PACKET on gsorx, plain

    def send_super(self, data: bytes, *, gso_type: int, hdr_len: int, mss: int,
                   csum_start: int) -> None:
        header = VNET.pack(NEEDS_CSUM, gso_type, hdr_len, mss, csum_start, 16)
        ethertype = int.from_bytes(data[12:14], "big")
        self.tx.sendto(header + data, ("gsotx", ethertype))

    def send_gso(self, data: bytes, gso: Gso, *, ecn: bool = False) -> None:
        self.send_super(data, gso_type=gso.gso_type | (GSO_ECN if ecn else 0),
                        hdr_len=gso.header_len, mss=gso.mss, csum_start=gso.l4)

    def _read(self, timeout: float) -> bytes | None:
        self.rx.settimeout(max(timeout, 0.01))
        try:
            data, ancdata, _, _ = self.rx.recvmsg(65535 + 64, socket.CMSG_SPACE(AUXDATA.size))
        except TimeoutError:
            return None
        for level, kind, aux in ancdata:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= AUXDATA.size:
                status, _, _, _, _, tci, tpid = AUXDATA.unpack_from(aux)
                if status & TP_STATUS_VLAN_VALID:  # the kernel took the tag off: put it back
                    tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                    data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
        return data

    def receive(self, count: int, flow: Flow) -> list[bytes]:
        """The frames of ``flow`` that gsorx reads: ``count`` of them and then silence."""
        got: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(got) < count:
            left = deadline - time.monotonic()
            data = self._read(left) if left > 0 else None
            if data is None:
                raise AssertionError(f"only {len(got)} of {count} frames arrived on gsorx")
            if _is_of(data, flow):
                got.append(data)
        while (data := self._read(QUIET)) is not None:
            assert not _is_of(data, flow), "more frames than expected arrived on gsorx"
        return got


def _is_of(data: bytes, flow: Flow) -> bool:
    pkt = Ether(data)
    return TCP in pkt and pkt[TCP].sport == flow.sport and pkt[TCP].dport == flow.dport


@pytest.fixture
def wire() -> Iterator[Wire]:
    with lab() as made:
        ns = made.netns()
        # no IPv6 chatter on the link (the sockets filter by ports anyway)
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"], netns=ns)
        made.veth(ns, "gsotx", ns, "gsorx", mtu=MTU)
        # the kernel must cut and checksum in software on gsotx and not merge again on gsorx
        run(["ethtool", "-K", "gsotx", "tso", "off", "gso", "off", "tx", "off"], netns=ns)
        run(["ethtool", "-K", "gsorx", "gro", "off"], netns=ns, check=False)

        def make_tx() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            sock.bind(("gsotx", 0))
            return sock

        def make_rx() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind(("gsorx", ETH_P_ALL))
            return sock

        tx = inside(ns, make_tx)
        try:
            rx = inside(ns, make_rx)
        except BaseException:
            tx.close()
            raise
        try:
            yield Wire(tx, rx)
        finally:
            tx.close()  # before lab() deletes the namespace
            rx.close()


def _linux_cuts(wire: Wire, flow: Flow, size: int, mss: int, *, flags: int = ACK,
                seq: int = 1000, ip_id: int = 7, ecn: bool = False) -> tuple[list[bytes],
                                                                            list[bytes]]:
    """(Linux's, ours) segments of one super-frame."""
    sf = partial_checksum(super_frame(flow, PAYLOAD[:size], seq=seq, flags=flags, ip_id=ip_id))
    ours = segment_tcp(SuperFrame(sf, mss))
    wire.send_gso(sf, describe(sf, mss), ecn=ecn)
    return wire.receive(len(ours), flow), ours


SHAPES = {
    "v4": Flow(),
    "v4-ip-options": Flow(ip_options="rr", tcp_options="mixed"),
    "v4-max-headers": Flow(ip_options="max", tcp_options="max"),
    "v4-vlan": Flow(vlan=100),
    "v4-no-df": Flow(df=False, tcp_options="none", tos=0x28),
    "v6": Flow(v6=True),
    "v6-vlan": Flow(v6=True, vlan=4000, flow_label=0xABCDE, tos=0xB8, tcp_options="mixed"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("size", "mss"), [
    (4344, 1448),   # k * mss
    (4343, 1447),   # odd mss, odd last segment
    (1449, 1448),   # a 1-byte last segment
    (1000, 1448),   # fits one mss: sent as one frame, only its checksum completed
    (60001, 8000),  # a 60 KB super-frame at jumbo mss
])
def test_linux_cuts_super_frames_as_segment_tcp_does(wire: Wire, shape: str, size: int,
                                                     mss: int) -> None:
    linux, ours = _linux_cuts(wire, SHAPES[shape], size, mss)
    assert linux == ours


@pytest.mark.parametrize("flags", [ACK | PSH, ACK | PSH | FIN, ACK | ECE, 0])
@pytest.mark.parametrize("shape", ["v4", "v6"])
def test_linux_puts_flags_where_segment_tcp_does(wire: Wire, flags: int, shape: str) -> None:
    linux, ours = _linux_cuts(wire, SHAPES[shape], 3 * 1200 + 5, 1200, flags=flags)
    assert linux == ours


@pytest.mark.parametrize("ecn", [True, False], ids=["gso-ecn", "no-gso-ecn"])
@pytest.mark.parametrize("shape", ["v4", "v6"])
def test_linux_keeps_cwr_on_the_first_segment_only(wire: Wire, ecn: bool, shape: str) -> None:
    linux, ours = _linux_cuts(wire, SHAPES[shape], 3 * 1200 + 5, 1200,
                              flags=ACK | CWR | ECE | PSH, ecn=ecn)
    assert linux == ours


def test_linux_wraps_seq_and_ip_id_as_segment_tcp_does(wire: Wire) -> None:
    linux, ours = _linux_cuts(wire, Flow(), 5 * 1000, 1000, seq=0xFFFFFFFF - 2500,
                              ip_id=0xFFFE)
    assert linux == ours


def test_stale_partial_field_after_an_address_rewrite(wire: Wire) -> None:
    """segment_tcp sums the addresses itself; Linux trusts the field. With the field right for
    the frame as sent, both agree, and ours is unchanged when the field is stale."""
    flow = Flow(dst="10.7.7.7")
    data = PAYLOAD[:3500]
    sf = partial_checksum(super_frame(flow, data, seq=9, ip_id=3))
    ours = segment_tcp(SuperFrame(sf, 1000))
    wire.send_gso(sf, describe(sf, 1000))
    assert wire.receive(len(ours), flow) == ours
    stale = bytearray(sf)
    stale_field = partial_checksum(super_frame(Flow(), data, seq=9, ip_id=3))
    at = describe(sf, 1000).l4 + 16
    stale[at : at + 2] = stale_field[at : at + 2]
    assert segment_tcp(SuperFrame(bytes(stale), 1000)) == ours


@pytest.mark.parametrize("shape", ["v4", "v4-max-headers", "v4-vlan", "v6", "v6-vlan"])
@pytest.mark.parametrize(("size", "mss"), [(5 * 1400, 1400), (4 * 1399 + 201, 1399),
                                           (7 * 8000 + 1111, 8000)])
def test_coalesced_super_frames_come_out_of_linux_as_the_original_segments(
        wire: Wire, shape: str, size: int, mss: int) -> None:
    flow = SHAPES[shape]
    originals = expected_segments(flow, PAYLOAD[:size], mss, seq=77, flags=ACK | PSH,
                                  ip_id=0xFFFD)  # built by scapy, ids wrapping
    out = coalesce_tcp(originals)
    assert len(out) == 1
    merged, gso = out[0]
    assert gso is not None and gso.segments == len(originals)
    wire.send_gso(merged, gso)
    assert wire.receive(len(originals), flow) == originals


def test_interleaved_flows_coalesce_and_linux_recuts_each_run(wire: Wire) -> None:
    one, two = Flow(), Flow(sport=40001)
    a = expected_segments(one, PAYLOAD[:6000], 1200, seq=1, ip_id=10)
    b = expected_segments(two, PAYLOAD[100:4900], 1200, seq=5, ip_id=90)
    frames = [a[0], a[1], a[2], b[0], b[1], a[3], a[4], b[2], b[3]]
    out = coalesce_tcp(frames)
    assert [None if g is None else g.segments for _, g in out] == [3, 2, 2, 2]
    for (merged, gso), flow, want in zip(out, [one, two, one, two],
                                         [a[:3], b[:2], a[3:], b[2:]], strict=True):
        assert gso is not None
        wire.send_gso(merged, gso)
        assert wire.receive(len(want), flow) == want


def test_single_frame_through_the_same_path_is_only_checksummed(wire: Wire) -> None:
    """A frame that is not a super-frame (payload below mss) is sent as is by Linux with its
    checksum completed: segment_tcp gives that one frame too."""
    flow = Flow(v6=True)
    whole = frame(flow, PAYLOAD[:500], seq=3)
    sf = partial_checksum(whole)
    assert segment_tcp(SuperFrame(sf, 1448)) == [whole]
    wire.send_gso(sf, describe(sf, 1448))
    assert wire.receive(1, flow) == [whole]
