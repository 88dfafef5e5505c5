"""Geneve receive without sockets: what Open vSwitch and we send (RFC 8926: version 0,
protocol 0x6558, the VNI as tun_id) is handed to the peer's port; a non-critical option is
skipped and the frame delivered; a critical option (we know none, RFC 8926 section 3.5.1) or an
OAM packet is dropped and counted under a reason of its own, a malformed packet as a bad one.
The packets are scapy's (an independent Geneve encoder), never our own codec's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.datapath.tunnel_rx import Arrival, Ports, TunnelReceiver

PEER = 0x7F000002  # 127.0.0.2, the ports' remote_ip
VNI = 0x00ABCD
INNER = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst="10.0.0.2")
              / ICMP())


@pytest.fixture
def receiver() -> Iterator[tuple[TunnelReceiver, Ports, TunnelPort]]:
    port = TunnelPort(PortKind.GENEVE, "geneve0", {"remote_ip": "127.0.0.2", "key": "flow"})
    ports: Ports = {port.demux_key: port}
    loop = EventLoop()
    try:
        yield TunnelReceiver(loop, ports, lambda *_: None), ports, port
    finally:
        loop.close()


def _receive(receiver: tuple[TunnelReceiver, Ports, TunnelPort], datagram: bytes,
             src: int = PEER) -> list[Arrival]:
    rx, ports, _ = receiver
    batch: list[Arrival] = []
    rx._geneve_datagram(datagram, 6081, src, ports, batch)
    # and the same from a view (a slice of a GRO batch), which takes the checked way
    rx._geneve_datagram(memoryview(datagram), 6081, src, ports, batch)
    return batch


def _geneve(*options: GeneveOptions, **fields: int) -> bytes:
    return bytes(GENEVE(vni=VNI, proto=0x6558, options=list(options), **fields) / INNER)


def test_a_plain_geneve_packet_is_the_peers_with_the_vni_as_tun_id(receiver: tuple[
        TunnelReceiver, Ports, TunnelPort]) -> None:
    port = receiver[2]
    assert _receive(receiver, _geneve()) == [(port, VNI, PEER, INNER)] * 2
    assert receiver[0].drops == {}


def test_a_non_critical_option_is_skipped_and_the_frame_delivered(receiver: tuple[
        TunnelReceiver, Ports, TunnelPort]) -> None:
    option = GeneveOptions(classid=0x0102, type=0x01, data=b"abcdefgh")
    assert _receive(receiver, _geneve(option)) == [(receiver[2], VNI, PEER, INNER)] * 2
    assert receiver[0].drops == {}


@pytest.mark.parametrize(("datagram", "reason"), [
    # the critical bit is the top bit of the option's type; C set as RFC 8926 says to, or not
    (_geneve(GeneveOptions(classid=0x0102, type=0x80, data=b"abcd"), critical=1),
     "geneve_critical_option"),
    (_geneve(GeneveOptions(classid=0x0102, type=0x01, data=b"abcd"),
             GeneveOptions(classid=0xFFFF, type=0xFF)), "geneve_critical_option"),
    (_geneve(oam=1), "geneve_oam"),
    (_geneve(version=1), "bad_tunnel_packet"),
    (bytes(GENEVE(vni=VNI, proto=0x0800) / IP(dst="10.0.0.2") / ICMP()), "bad_tunnel_packet"),
    (_geneve()[:8 + 13], "bad_tunnel_packet"),  # no room for an inner Ethernet header
    # Opt Len says 8 bytes of options, the option says 12
    (bytes.fromhex("02006558") + bytes(GENEVE(vni=VNI))[4:8] + bytes.fromhex("0102010201020304")
     + INNER, "bad_tunnel_packet"),
])
def test_what_must_not_be_delivered_is_dropped_and_counted_by_reason(
        receiver: tuple[TunnelReceiver, Ports, TunnelPort], datagram: bytes, reason: str
) -> None:
    assert _receive(receiver, datagram) == []
    assert receiver[0].drops == {reason: 2}


def test_a_packet_from_an_unknown_peer_or_with_another_key_is_counted_as_such(
        receiver: tuple[TunnelReceiver, Ports, TunnelPort]) -> None:
    rx, ports, port = receiver
    assert _receive(receiver, _geneve(), src=0x7F000009) == []
    assert rx.drops == {"unknown_tunnel_peer": 2}
    del ports[port.demux_key]
    fixed = TunnelPort(PortKind.GENEVE, "geneve1", {"remote_ip": "127.0.0.2", "key": "7"})
    ports[fixed.demux_key] = fixed
    assert _receive(receiver, _geneve()) == []
    assert rx.drops == {"unknown_tunnel_peer": 2, "unknown_tunnel_key": 2}


def test_a_vxlan_port_does_not_take_geneve_packets(receiver: tuple[
        TunnelReceiver, Ports, TunnelPort]) -> None:
    rx, ports, port = receiver
    del ports[port.demux_key]
    vxlan = TunnelPort(PortKind.VXLAN, "vxlan0", {"remote_ip": "127.0.0.2", "key": "flow",
                                                  "dst_port": "6081"})
    ports[vxlan.demux_key] = vxlan
    assert _receive(receiver, _geneve()) == []
    assert rx.drops == {"unknown_tunnel_peer": 2}

