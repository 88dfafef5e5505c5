"""Tunnel port options as users write them (options:remote_ip=..., key=N|flow, dst_port):
accepted the way Open vSwitch reads them, refused with the bad part named otherwise."""

from __future__ import annotations

import pytest

from tunnelnet.datapath import tunnel_rx
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel import TunnelPort
from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.tunnel_kinds import Transport


def _port(kind: PortKind = PortKind.VXLAN, **options: str) -> TunnelPort:
    return TunnelPort(kind, "tun0", {"remote_ip": "127.0.0.2", **options})


def test_key_flow_means_the_key_comes_from_the_flow() -> None:
    assert _port(key="flow").key is None


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1001", 1001), ("0x64", 100),
                                             ("16777215", (1 << 24) - 1)])
def test_vxlan_key_is_a_24_bit_number_in_decimal_or_hex(text: str, value: int) -> None:
    assert _port(key=text).key == value


def test_without_key_option_the_key_is_zero() -> None:
    assert _port().key == 0


def test_gre_key_takes_32_bits_and_vxlan_only_24() -> None:
    assert _port(PortKind.GRE, key=str((1 << 32) - 1)).key == (1 << 32) - 1
    with pytest.raises(PortError, match="does not fit 24 bits"):
        _port(key=str(1 << 24))


def test_encapsulation_overheads_follow_the_rfcs() -> None:
    # outer IPv4 20 + UDP 8 + VXLAN 8 (RFC 7348); IPv4 20 + GRE 4 + key 4 (RFC 2784/2890)
    assert _port().overhead == 36
    assert _port(PortKind.GRE, key="5").overhead == 28


def test_dst_port_defaults_to_4789_and_can_be_set() -> None:
    assert _port().dst_port == 4789  # IANA's VXLAN port (RFC 7348 section 5)
    assert _port(dst_port="8472").dst_port == 8472


def test_geneve_listens_on_6081_with_a_24_bit_vni_and_the_options_of_a_udp_kind() -> None:
    port = _port(PortKind.GENEVE, key="0xffffff", local_ip="127.0.0.1")
    assert port.dst_port == 6081  # IANA's Geneve port (RFC 8926 section 3.3)
    assert port.key == (1 << 24) - 1  # the VNI is 24 bits (section 3.4)
    assert _port(PortKind.GENEVE, dst_port="16081").dst_port == 16081
    assert _port(PortKind.GENEVE, key="flow").key is None
    # outer IPv4 20 + UDP 8 + Geneve 8 without options (RFC 8926 section 3.4)
    assert port.overhead == 36
    assert port.demux_key == (PortKind.GENEVE, 6081, 0x7F000002, (1 << 24) - 1)
    with pytest.raises(PortError, match="does not fit 24 bits"):
        _port(PortKind.GENEVE, key=str(1 << 24))


def test_route_towards_the_peer_gives_our_address_and_the_underlay_mtu() -> None:
    port = _port()
    assert port.tun_dst == 0x7F000001  # the kernel's source address towards 127.0.0.2
    assert port.underlay_mtu >= 1500  # loopback's MTU (65536 on Linux)


@pytest.mark.parametrize(
    ("kind", "options", "named"),
    [
        (PortKind.VXLAN, {}, "remote_ip=<IPv4 address> is required"),
        (PortKind.VXLAN, {"remote_ip": "flow"}, "remote_ip=flow is not supported"),
        (PortKind.GRE, {"remote_ip": "192.0.2.300"}, "'192.0.2.300' is not an IPv4 address"),
        (PortKind.VXLAN, {"remote_ip": "192.0.2.2", "local_ip": "me"}, "'me'"),
        (PortKind.VXLAN, {"remote_ip": "192.0.2.2", "key": "-1"}, "does not fit"),
        (PortKind.VXLAN, {"remote_ip": "192.0.2.2", "dst_port": "70000"}, "'70000'"),
        (PortKind.GRE, {"remote_ip": "192.0.2.2", "dst_port": "4789"}, "dst_port"),
        (PortKind.GRE, {"remote_ip": "192.0.2.2", "csum": "true"}, "csum"),
        (PortKind.GENEVE, {}, "remote_ip=<IPv4 address> is required"),
        (PortKind.GENEVE, {"remote_ip": "192.0.2.2", "dst_port": "0"}, "'0' is not a UDP"),
        # options (tun_metadata) and checksums are not sent: refused, not silently ignored
        (PortKind.GENEVE, {"remote_ip": "192.0.2.2", "csum": "true"}, "csum"),
    ],
)
def test_bad_options_are_refused_naming_the_bad_part(kind: PortKind, options: dict[str, str],
                                                     named: str) -> None:
    with pytest.raises(PortError, match=named.replace("(", r"\(")):
        TunnelPort(kind, "tun0", options)


def test_the_overhead_is_the_registrys_less_the_outer_ethernet_header() -> None:
    # the underlay MTU counts from the outer IPv4 header; the registry's overhead (RFC sizes,
    # checked in tests/unit/packet/test_tunnel_kinds.py) also counts the outer Ethernet one
    for kind in (PortKind.VXLAN, PortKind.GRE, PortKind.GENEVE):
        assert _port(kind).overhead == tunnel_kinds.kind(kind.value).overhead - 14


def test_the_largest_frame_sent_whole_is_the_underlay_mtu_less_the_overhead() -> None:
    port = _port(PortKind.GRE)
    assert port.max_inner == port.underlay_mtu - 28


def test_a_kind_the_datapath_has_no_receive_path_for_is_refused_not_sent_as_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(tunnel_rx.IP_PARSERS, tunnel_kinds.GRE.name)
    with pytest.raises(PortError, match="gre: not a tunnel type this datapath carries"):
        _port(PortKind.GRE)


def test_a_parser_for_the_wrong_transport_does_not_make_a_kind_carried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GRE is an IP kind (registry): a UDP parser registered under its name must not count
    monkeypatch.delitem(tunnel_rx.IP_PARSERS, tunnel_kinds.GRE.name)
    monkeypatch.setitem(tunnel_rx.UDP_PARSERS, tunnel_kinds.GRE.name, "_vxlan_datagram")
    with pytest.raises(PortError, match="not a tunnel type"):
        _port(PortKind.GRE)


def test_a_port_kind_that_is_no_tunnel_kind_is_refused_as_a_tunnel_port() -> None:
    with pytest.raises(PortError, match="system: not a tunnel type"):
        _port(PortKind.SYSTEM)


def test_every_parser_is_a_receiver_method_for_a_registry_kind_of_its_transport() -> None:
    for transport, parsers in ((Transport.UDP, tunnel_rx.UDP_PARSERS),
                               (Transport.IP, tunnel_rx.IP_PARSERS)):
        for name, method in parsers.items():
            assert tunnel_kinds.kind(name).transport is transport
            assert callable(getattr(tunnel_rx.TunnelReceiver, method))
    assert tunnel_rx.kinds() == {"vxlan", "gre", "geneve"}


def test_demux_keys_equal_the_plain_tuples_the_receive_path_looks_up() -> None:
    port = _port(key="7")
    key = port.demux_key
    assert key == (PortKind.VXLAN, 4789, 0x7F000002, 7)
    assert hash(key) == hash((PortKind.VXLAN, 4789, 0x7F000002, 7))
    assert _port(PortKind.GRE).demux_key.dst_port == 0  # an IP kind has no port
