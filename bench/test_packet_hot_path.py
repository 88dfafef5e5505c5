"""Micro-benchmarks of the per-packet hot path (run: make bench).

The frame is a VM's TCP segment (1400 bytes of data) inside VXLAN, as the datapath receives it
from the underlay. Nothing is asserted about time; the figures are read from the report. The
answers checked here are guards; the codec is tested in tests/unit/packet (test_packet_tunnel,
test_packet_flowkey, test_packet_rewrite, against scapy).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tunnelnet.packet import (
    apply_key_changes,
    extract_flow_key,
    source_port,
    vxlan_decap,
    vxlan_decap_payload,
    vxlan_encap,
    vxlan_payload,
)

pytestmark = pytest.mark.benchmark(group="packet")

INNER = bytes(Ether(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02")
              / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="PA")
              / Raw(b"x" * 1400))
OUTER = vxlan_encap(INNER, 1001, "192.0.2.1", "192.0.2.2", "02:00:00:00:01:01",
                    "02:00:00:00:01:02")
UDP_PAYLOAD = vxlan_payload(INNER, 1001)  # what a kernel UDP socket on 4789 hands over


def test_bench_flow_key_of_vxlan_tcp_frame_decap_then_inner_key(benchmark: Callable[
        ..., object]) -> None:
    def decap_and_key() -> object:
        vni, inner = vxlan_decap(OUTER)
        return extract_flow_key(inner, 5, vni)

    key = benchmark(decap_and_key)
    assert isinstance(key, dict)
    assert key["tun_id"] == 1001
    assert key["tp_dst"] == 80


def test_bench_flow_key_of_vxlan_udp_socket_payload(benchmark: Callable[..., object]) -> None:
    def decap_and_key() -> object:
        vni, inner = vxlan_decap_payload(UDP_PAYLOAD)
        return extract_flow_key(inner, 5, vni)

    key = benchmark(decap_and_key)
    assert isinstance(key, dict)
    assert key["tun_id"] == 1001


def test_bench_flow_key_of_outer_frame_alone(benchmark: Callable[..., object]) -> None:
    key = benchmark(extract_flow_key, OUTER, 1)
    assert isinstance(key, dict)
    assert key["tp_dst"] == 4789


def test_bench_flow_key_of_inner_tcp_frame(benchmark: Callable[..., object]) -> None:
    key = benchmark(extract_flow_key, INNER, 1)
    assert isinstance(key, dict)
    assert key["tcp_flags"] == 0x18


def test_bench_vxlan_source_port(benchmark: Callable[..., object]) -> None:
    port = benchmark(source_port, INNER)
    assert isinstance(port, int)
    assert 49152 <= port <= 65535


def test_bench_pop_vlan_rewrite(benchmark: Callable[..., object]) -> None:
    tagged = INNER[:12] + b"\x81\x00\x00\x05" + INNER[12:]
    old = extract_flow_key(tagged, 1)
    new = {**old, "vlan_tci": 0, "tun_id": 1001}
    out = benchmark(apply_key_changes, tagged, old, new)
    assert out == INNER


def test_bench_vxlan_transmit_payload(benchmark: Callable[..., object]) -> None:
    """What the datapath does per frame sent to a VXLAN peer on a UDP socket."""

    def transmit() -> tuple[int, bytes]:
        return source_port(INNER), vxlan_payload(INNER, 1001)

    port, payload = benchmark(transmit)
    assert payload == UDP_PAYLOAD
    assert 49152 <= port <= 65535
