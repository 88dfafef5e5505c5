"""The tunnel-kind registry: its facts are the RFCs' and Neutron's, and it refuses clashes."""

from __future__ import annotations

import dataclasses

import pytest

from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.tunnel import decap, encap
from tunnelnet.packet.tunnel_kinds import GRE, VXLAN, Transport


def test_vxlan_and_gre_carry_the_numbers_of_their_rfcs_and_of_neutron() -> None:
    # RFC 7348: UDP 4789, 24-bit VNI, 8-byte header; Neutron's VXLAN_TUN_TO_LV is table 4
    assert (VXLAN.transport, VXLAN.number, VXLAN.key_bits, VXLAN.neutron_table) == (
        Transport.UDP, 4789, 24, 4)
    # RFC 2784/2890: IP protocol 47, 32-bit key; Neutron's GRE_TUN_TO_LV is table 3
    assert (GRE.transport, GRE.number, GRE.key_bits, GRE.neutron_table) == (
        Transport.IP, 47, 32, 3)
    # outer Ethernet 14 + IPv4 20 (+ UDP 8) + tunnel header 8
    assert (VXLAN.overhead, GRE.overhead) == (50, 42)


def test_the_overhead_is_counted_as_neutron_documents_it() -> None:
    # Neutron's MTU considerations: VXLAN 50 = IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14,
    # GRE 42 = IPv4 20 + GRE 8 + inner Ethernet 14; no outer Ethernet among them
    assert dict(VXLAN.mtu_parts) == {"outer IPv4": 20, "UDP": 8, "VXLAN": 8,
                                     "inner Ethernet": 14}
    assert dict(GRE.mtu_parts) == {"outer IPv4": 20, "GRE with key": 8, "inner Ethernet": 14}
    for entry in tunnel_kinds.all_kinds():
        assert sum(size for _, size in entry.mtu_parts) == entry.overhead, entry.name
    assert GRE.mtu_sum == "outer IPv4 20 + GRE with key 8 + inner Ethernet 14 = 42"


def test_each_kind_round_trips_its_key_and_frame_through_its_own_payload_functions() -> None:
    inner = bytes(range(60))
    for entry in tunnel_kinds.all_kinds():
        key = entry.key_max
        got_key, got_inner = entry.decap_payload(entry.payload(inner, key), 0)
        assert (got_key, bytes(got_inner)) == (key, inner), entry.name


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(PacketError, match=r"unknown tunnel type 'ipip' \(known: vxlan, gre"):
        tunnel_kinds.kind("ipip")
    assert tunnel_kinds.find("ipip") is None
    assert not tunnel_kinds.is_tunnel("vlan")


def test_keys_outside_the_kinds_width_are_refused() -> None:
    assert VXLAN.check_key(0xFFFFFF) == 0xFFFFFF
    with pytest.raises(PacketError, match="VXLAN VNI 16777216 does not fit in 24 bits"):
        VXLAN.check_key(1 << 24)
    with pytest.raises(PacketError, match="GRE key -1"):
        GRE.check_key(-1)


def test_a_kind_that_clashes_with_a_registered_one_is_refused() -> None:
    twin = dataclasses.replace(VXLAN, name="vxlan2", port_prefix="vx2")
    with pytest.raises(ValueError, match="same br-tun table as 'vxlan'"):
        tunnel_kinds.register(twin)
    assert "vxlan2" not in tunnel_kinds.names()


def test_the_table_lookup_finds_the_kind_of_a_br_tun_table() -> None:
    assert tunnel_kinds.by_table(4) is VXLAN
    assert tunnel_kinds.by_table(3) is GRE
    assert tunnel_kinds.by_table(22) is None


def test_a_kind_is_found_by_how_it_travels() -> None:
    assert tunnel_kinds.by_number(Transport.UDP, 4789) is VXLAN
    assert tunnel_kinds.by_number(Transport.UDP, 6081) is tunnel_kinds.GENEVE
    assert tunnel_kinds.by_number(Transport.IP, 47) is GRE
    assert tunnel_kinds.by_number(Transport.IP, 4789) is None  # a port is no protocol
    assert set(tunnel_kinds.udp_ports()) == {4789, 6081}


def test_every_kind_round_trips_through_the_whole_frame_encap_and_decap() -> None:
    inner = bytes.fromhex("fa163e000002fa163e0000010800") + bytes(46)
    for entry in tunnel_kinds.all_kinds():
        frame = encap(entry.name, inner, 77, "192.0.2.1", "192.0.2.2", "02:00:00:00:00:01",
                      "02:00:00:00:00:02", udp_checksum=True)
        assert len(frame) == len(inner) + entry.overhead, entry.name
        kind, key, got = decap(frame)
        assert (kind, key, bytes(got)) == (entry.name, 77, inner)
