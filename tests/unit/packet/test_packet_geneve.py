"""Geneve (RFC 8926): literal bytes of its layout, scapy's Geneve layer judging both ways,
round trips, and each refusal of the decapsulator named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packet_strategies import geneve_options, geneves
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tunnelnet.packet import PacketError, decode, geneve, geneve_decap, geneve_encap, tunnel_kinds
from tunnelnet.packet.geneve import Geneve, GeneveOption, geneve_decap_payload, geneve_payload
from tunnelnet.packet.tunnel_kinds import Transport, by_table

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
HV1, HV2 = "02:00:00:00:01:01", "02:00:00:00:01:02"
UNDERLAY1, UNDERLAY2 = "192.0.2.1", "192.0.2.2"
INNER = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2")
              / TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET /"))


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ---- the layout of RFC 8926 section 3.4 and 3.5, as literal bytes ---------------------------


def test_base_header_is_version_optlen_flags_protocol_vni_reserved() -> None:
    # Ver 0 + Opt Len 0 | O C Rsvd = 0 | Protocol Type 0x6558 | VNI 0x123456 | Reserved 0
    raw = hx("00 00 6558 123456 00")
    header, end = geneve.parse(raw, 0)
    assert (header, end) == (Geneve(vni=0x123456), 8)
    assert geneve.build(Geneve(vni=0x123456)) == raw
    assert geneve_payload(b"", 0x123456) == raw


def test_options_are_counted_in_words_and_the_type_top_bit_is_critical() -> None:
    # Opt Len 3 words (12 bytes), C set; option class 0x0102 type 0x80 (critical) length 1 word
    # + data, then class 0xffff type 0x01 with no data and R bits 101
    raw = hx("03 40 6558 0003e9 00" "0102 80 01 deadbeef" "ffff 01 a0")
    header, end = geneve.parse(raw, 0)
    assert end == 8 + 12
    assert header == Geneve(vni=1001, critical=True, options=(
        GeneveOption(0x0102, 0x80, hx("deadbeef")), GeneveOption(0xFFFF, 0x01, b"", 0b101)))
    assert header.options[0].critical and not header.options[1].critical
    assert geneve.build(header) == raw


def test_oam_flag_and_reserved_bits_keep_their_places() -> None:
    raw = hx("00 ab 0800 000001 7f")  # O=1 C=0 Rsvd=0x2b, protocol IPv4, reserved2 0x7f
    header, _ = geneve.parse(raw, 0)
    assert (header.oam, header.critical, header.reserved1, header.protocol, header.reserved2) \
        == (True, False, 0x2B, 0x0800, 0x7F)
    assert geneve.build(header) == raw


def test_the_registry_carries_rfc8926_and_neutrons_numbers() -> None:
    entry = tunnel_kinds.GENEVE
    assert (entry.transport, entry.number, entry.key_bits, entry.key_name) == (
        Transport.UDP, 6081, 24, "VNI")
    # Neutron's GENEVE_TUN_TO_LV is table 6; 14 + 20 + 8 + 8 = 50 without options
    assert (entry.neutron_table, entry.overhead, entry.header_length) == (6, 50, 8)
    assert by_table(6) is entry
    assert len(f"{entry.port_prefix}-c0000202") == 15  # Linux's IFNAMSIZ - 1


# ---- scapy judges what we build, we judge what scapy builds -------------------------------


def test_scapy_dissects_our_frame_and_options_field_by_field() -> None:
    header = Geneve(vni=0xABCDEF, critical=True, options=(
        GeneveOption(0x0102, 0x80, hx("01020304 05060708")), GeneveOption(0x0101, 0x05)))
    frame = bytes(Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2)
                  / UDP(sport=50000, dport=6081) / Raw(geneve.build(header, INNER)))
    got = Ether(frame)  # dissected afresh: scapy finds Geneve by the port alone
    g = got[GENEVE]
    assert (g.version, g.optionlen, g.oam, g.critical, g.proto, g.vni) == (
        0, 4, 0, 1, 0x6558, 0xABCDEF)  # (4 + 8) + 4 bytes of options = 4 words
    assert [(o.classid, o.type, o.length, o.data) for o in g.options] == [
        (0x0102, 0x80, 2, hx("01020304 05060708")), (0x0101, 0x05, 0, b"")]
    assert bytes(g[Ether]) == INNER


def test_scapy_dissects_our_whole_frame_with_a_flow_hashed_source_port() -> None:
    frame = geneve_encap(INNER, 5000, UNDERLAY1, UNDERLAY2, HV1, HV2, udp_checksum=True)
    got = Ether(frame)
    assert got[IP].flags == "DF" and got[UDP].dport == 6081
    assert 49152 <= got[UDP].sport <= 65535
    assert (got[GENEVE].vni, got[GENEVE].proto, got[GENEVE].optionlen) == (5000, 0x6558, 0)
    assert bytes(got[GENEVE].payload) == INNER
    # scapy recomputes the checksums: ours were right
    rebuilt = got.copy()
    del rebuilt[IP].chksum, rebuilt[UDP].chksum
    assert bytes(Ether(bytes(rebuilt))) == frame


def test_we_decapsulate_what_scapy_builds_skipping_its_non_critical_options() -> None:
    frame = bytes(Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2)
                  / UDP(sport=51000, dport=6081)
                  / GENEVE(vni=77, proto=0x6558, options=[
                      GeneveOptions(classid=0x0102, type=0x01, data=b"abcd"),
                      GeneveOptions(classid=0x0101, type=0x7F, data=b"12345678")])
                  / Ether(INNER))
    vni, inner = geneve_decap(frame)
    assert (vni, bytes(inner)) == (77, INNER)
    layers = decode(frame)
    parsed = next(layer for layer in layers if isinstance(layer, Geneve))
    assert parsed.options == (GeneveOption(0x0102, 0x01, b"abcd"),
                              GeneveOption(0x0101, 0x7F, b"12345678"))


@given(geneves, st.binary(max_size=32))
def test_scapy_agrees_with_our_build_for_any_header(header: Geneve, payload: bytes) -> None:
    got = GENEVE(geneve.build(header, payload))
    assert (got.vni, got.oam, got.critical, got.reserved, got.reserved2, got.proto) == (
        header.vni, header.oam, header.critical, header.reserved1, header.reserved2,
        header.protocol)
    assert [(o.classid, o.type, o.reserved, o.data) for o in got.options] == [
        (o.option_class, o.type, o.reserved, o.data) for o in header.options]
    # and scapy's bytes of those fields are ours
    assert bytes(got) == geneve.build(header, payload)


# ---- round trips ----------------------------------------------------------------------------


@given(geneves, st.binary(max_size=32))
def test_parse_and_build_mirror_each_other(header: Geneve, payload: bytes) -> None:
    raw = geneve.build(header, payload)
    assert geneve.parse(raw, 0) == (header, 8 + header.options_length)


@given(st.integers(0, (1 << 24) - 1), st.binary(min_size=14, max_size=64),
       st.lists(geneve_options.filter(lambda o: not o.critical), max_size=3))
def test_decap_gives_back_vni_and_frame_past_any_non_critical_options(
        vni: int, inner: bytes, options: list[GeneveOption]) -> None:
    assert bytes(geneve_decap_payload(geneve_payload(inner, vni))[1]) == inner
    raw = geneve.build(Geneve(vni=vni, options=tuple(options)), inner)
    got_vni, got_inner = geneve_decap_payload(b"pad" + raw, 3)
    assert (got_vni, bytes(got_inner)) == (vni, inner)


def test_reserved_bits_are_ignored_on_receipt_as_rfc_8926_asks() -> None:
    # Rsvd (6 bits) all set, and the reserved byte after the VNI: neither changes the answer
    raw = hx("00 3f 6558 abcdef ff") + INNER
    vni, inner = geneve_decap_payload(raw)
    assert (vni, bytes(inner)) == (0xABCDEF, INNER)


# ---- refusals, each named -----------------------------------------------------------------


def _payload(header: Geneve) -> bytes:
    return geneve.build(header, INNER)


@pytest.mark.parametrize(("raw", "message"), [
    (hx("40 00 6558 000001 00") + INNER, "Geneve version 1 is not supported"),
    (_payload(Geneve(vni=1, protocol=0x0800)), r"protocol type 0x0800 is not Ethernet"),
    (_payload(Geneve(vni=1, oam=True)), "Geneve OAM packet"),
    (_payload(Geneve(vni=1, critical=True, options=(GeneveOption(0x0102, 0x01, b"okay"),
                                                    GeneveOption(0x0101, 0x81)))),
     "critical option class 0x0101 type 0x81 is unknown"),
    # C clear does not hide a critical option
    (_payload(Geneve(vni=1, options=(GeneveOption(0xFFFF, 0xFE),))),
     "critical option class 0xffff type 0xfe"),
    # Opt Len 1 word, but the option says it has 1 more word of data
    (hx("01 00 6558 000001 00 0102 01 01") + INNER, "options run 4 bytes past Opt Len"),
    (hx("3f 00 6558 000001 00") + INNER, "leave no room for an inner Ethernet header"),
    (hx("00 00 6558 000001 00") + INNER[:13], "Geneve packet truncated"),
])
def test_decap_refuses_naming_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        geneve_decap_payload(raw)


def test_parse_refuses_an_unknown_version_and_options_past_the_end() -> None:
    with pytest.raises(PacketError, match="Geneve version 2"):
        geneve.parse(hx("80 00 6558 000001 00"), 0)
    with pytest.raises(PacketError, match="runs 4 bytes past the options length"):
        geneve.parse(hx("01 00 6558 000001 00 0102 01 01 00000000"), 0)
    with pytest.raises(PacketError, match="Geneve header with options truncated"):
        geneve.parse(hx("02 00 6558 000001 00 0102 01 00"), 0)


def test_build_refuses_what_does_not_fit_its_fields() -> None:
    with pytest.raises(PacketError, match="Geneve VNI 16777216"):
        geneve_payload(INNER, 1 << 24)
    with pytest.raises(PacketError, match="not a multiple of 4"):
        geneve.build(Geneve(vni=1, options=(GeneveOption(1, 1, b"abc"),)))
    big = GeneveOption(1, 1, bytes(124))
    with pytest.raises(PacketError, match="exceed the 252"):
        geneve.build(Geneve(vni=1, options=(big, big, big)))


def test_whole_frame_decap_refuses_another_udp_port() -> None:
    frame = bytearray(geneve_encap(INNER, 1, UNDERLAY1, UNDERLAY2, HV1, HV2))
    frame[36:38] = (4789).to_bytes(2, "big")
    with pytest.raises(PacketError, match=r"port 4789 is not Geneve \(6081\)"):
        geneve_decap(bytes(frame))
