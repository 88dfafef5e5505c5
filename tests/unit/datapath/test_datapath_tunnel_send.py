"""The tunnel sender's one MTU check and its per-kind encapsulation, without sockets: a frame
whose outer IPv4 packet (RFC 7348: +36 bytes for VXLAN; RFC 2890: +28 for GRE with a key;
RFC 8926: +36 for Geneve without options)
would exceed the underlay MTU is refused before anything is built or sent, one that fits goes
on (here to a missing socket, which the Dropped callback reports)."""

from __future__ import annotations

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.datapath.tunnel_tx import MTU_EXCEEDED, NO_SOCKET, TunnelSender
from tunnelnet.packet.offload import describe, partial_checksum
from tunnelnet.packet.tunnel import gre_payload, vxlan_payload

# RFC 8926: Geneve without options is as long as VXLAN
OUTER = {PortKind.VXLAN: 20 + 8 + 8, PortKind.GRE: 20 + 4 + 4, PortKind.GENEVE: 20 + 8 + 8}


def _port(kind: PortKind) -> TunnelPort:
    port = TunnelPort(kind, "tun0", {"remote_ip": "127.0.0.2", "key": "flow"})
    port.underlay_mtu, port.max_inner = 1500, 1500 - port.overhead
    return port


@pytest.mark.parametrize("kind", list(OUTER))
def test_a_frame_one_byte_too_long_for_the_underlay_is_refused_for_all_its_flow(
        kind: PortKind) -> None:
    dropped: list[tuple[str, int, int]] = []
    sender = TunnelSender(lambda _p, reason, n, length: dropped.append((reason, n, length)))
    port = _port(kind)
    longest = 1500 - OUTER[kind]
    assert sender.send_many(port, [b"\0" * (longest + 1)] * 3, 5) == MTU_EXCEEDED
    assert dropped == []  # the caller counts the refusal, for all three
    assert sender.send(port, b"\0" * longest, 5) is None  # fits: on to the (missing) socket
    assert dropped == [(NO_SOCKET, 1, longest)]


@pytest.mark.parametrize("kind", list(OUTER))
def test_a_super_frame_is_judged_by_its_segments_not_its_length(kind: PortKind) -> None:
    frame = partial_checksum(bytes(Ether() / IP() / TCP() / Raw(b"x" * 6000)))
    sender = TunnelSender()
    port = _port(kind)
    fits = 1500 - OUTER[kind] - 14 - 20 - 20  # the MSS whose segments just fit
    assert sender.send_super(port, frame, describe(frame, fits + 1), 1) == MTU_EXCEEDED
    assert sender.send_super(port, frame, describe(frame, fits), 1) is None


def test_the_plan_header_is_the_kinds_header_for_the_flows_key() -> None:
    sender = TunnelSender()
    vxlan, gre = _port(PortKind.VXLAN), _port(PortKind.GRE)
    encap = sender.encap(vxlan, 0x123456, 50000)
    assert encap is not None
    assert (encap.port, encap.sport, encap.header) == (vxlan, 50000,
                                                       vxlan_payload(b"", 0x123456))
    encap = sender.encap(gre, 0xDEADBEEF, 0)
    assert encap is not None and encap.header == gre_payload(b"", 0xDEADBEEF)
    # Geneve's: version 0, no options, no flags, Ethernet inside (scapy's encoder, RFC 8926)
    encap = sender.encap(_port(PortKind.GENEVE), 0x123456, 50000)
    assert encap is not None
    assert encap.header == bytes(GENEVE(vni=0x123456, proto=0x6558))
