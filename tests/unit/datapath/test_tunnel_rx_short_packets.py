"""Tunnel receive on packets cut short: every prefix of a valid VXLAN, Geneve or GRE packet
(scapy's, an independent encoder) is counted as a bad packet, down to none at all, and never
raises out of the parser. The fuzzer found GRE's parser reading the first byte of an empty
buffer (tests/adversarial/fuzz_regressions/datapath-receive/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.datapath.tunnel_rx import BAD_PACKET, Arrival, Ports, TunnelReceiver

INNER = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst="10.0.0.2")
              / ICMP())
PEER = "127.0.0.2"


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    made = EventLoop()
    yield made
    made.close()


def _receiver(loop: EventLoop, kind: PortKind) -> tuple[TunnelReceiver, Ports, TunnelPort]:
    port = TunnelPort(kind, "t0", {"remote_ip": PEER, "key": "flow"})
    ports: Ports = {port.demux_key: port}
    return TunnelReceiver(loop, ports, lambda *_: None), ports, port


def test_every_prefix_of_a_gre_packet_is_a_bad_packet(loop: EventLoop) -> None:
    rx, _, port = _receiver(loop, PortKind.GRE)
    whole = bytes(IP(src=PEER, dst="127.0.0.1") / GRE(key_present=1, key=7, proto=0x6558)
                  / INNER)
    assert rx._gre_packet(whole, PEER) == (port, 7, port.remote, INNER)
    inner_starts = 20 + 8
    for cut in range(inner_starts + 14):  # short of an inner Ethernet header
        assert rx._gre_packet(whole[:cut], PEER) is None, cut
    assert rx.drops == {BAD_PACKET: inner_starts + 14}


@pytest.mark.parametrize("kind", [PortKind.VXLAN, PortKind.GENEVE])
def test_every_prefix_of_a_udp_tunnel_payload_is_a_bad_packet(loop: EventLoop,
                                                               kind: PortKind) -> None:
    rx, ports, port = _receiver(loop, kind)
    header = VXLAN(vni=7) if kind is PortKind.VXLAN else GENEVE(vni=7, proto=0x6558)
    whole = bytes(header / INNER)
    batch: list[Arrival] = []
    for cut in range(8 + 14):
        rx_parse = rx._vxlan_datagram if kind is PortKind.VXLAN else rx._geneve_datagram
        rx_parse(whole[:cut], port.dst_port, port.remote, ports, batch)
    assert batch == []
    assert rx.drops == {BAD_PACKET: 8 + 14}
