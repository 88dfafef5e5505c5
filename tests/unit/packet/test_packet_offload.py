"""segment_tcp (software TSO) against scapy: scapy builds the super-frame, we make its TCP
checksum partial and cut it, and each segment must be byte for byte the frame scapy builds on
its own for that segment (lengths and checksums recomputed by scapy, never by us)."""

from __future__ import annotations

import struct
from contextlib import suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from support.tcp_frames import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    Flow,
    expected_segments,
    flows,
    frame,
    partial_field,
    scapy_valid_checksums,
    super_frame,
)
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.offload import (
    TCP_CSUM_OFFSET,
    VIRTIO_GSO_TCPV4,
    VIRTIO_GSO_TCPV6,
    Gso,
    SuperFrame,
    describe,
    l4_offsets,
    partial_checksum,
    segment_tcp,
)

PAYLOAD = bytes(range(256)) * 300  # 76800 bytes to cut payloads from


def _cut(flow: Flow, size: int, mss: int, *, seq: int = 1000, flags: int = ACK,
         ip_id: int = 7) -> tuple[list[bytes], list[bytes]]:
    """(ours, scapy's) segments of a super-frame of ``size`` payload bytes."""
    data = PAYLOAD[:size]
    sf = partial_checksum(super_frame(flow, data, seq=seq, flags=flags, ip_id=ip_id))
    return (segment_tcp(SuperFrame(sf, mss)),
            expected_segments(flow, data, mss, seq=seq, flags=flags, ip_id=ip_id))


SHAPES = {
    "v4": Flow(),
    "v4-ip-options": Flow(ip_options="rr"),
    "v4-max-headers": Flow(ip_options="max", tcp_options="max"),
    "v4-no-tcp-options": Flow(tcp_options="none"),
    "v4-vlan": Flow(vlan=100),
    "v4-no-df": Flow(df=False),
    "v6": Flow(v6=True),
    "v6-vlan-mixed-options": Flow(v6=True, vlan=4095, tcp_options="mixed", flow_label=0xABCDE,
                                  tos=0xB8),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("size", "mss"), [
    (1, 1448),         # one byte
    (1000, 1448),      # below mss: one frame
    (1448, 1448),      # exactly mss: one frame
    (1449, 1448),      # one byte over: a 1-byte last segment
    (4344, 1448),      # k * mss
    (4343, 1448),      # odd last segment
    (5001, 1447),      # odd mss, odd payload
    (2897, 1),         # mss of 1 byte (every segment odd)
    (65000, 9000),     # a full 64 KiB super-frame at jumbo mss
    (0, 1448),         # no payload at all
])
def test_segments_are_the_frames_scapy_builds(shape: str, size: int, mss: int) -> None:
    ours, theirs = _cut(SHAPES[shape], size, mss)
    assert len(ours) == max(1, -(-size // mss))
    assert ours == theirs


@pytest.mark.parametrize("flags", [
    ACK, ACK | PSH, ACK | FIN, ACK | PSH | FIN, ACK | CWR, ACK | ECE, ACK | CWR | ECE,
    ACK | CWR | ECE | PSH | FIN, 0,
])
@pytest.mark.parametrize("shape", ["v4", "v6-vlan-mixed-options"])
def test_fin_psh_go_to_the_last_segment_cwr_to_the_first(flags: int, shape: str) -> None:
    ours, theirs = _cut(SHAPES[shape], 3 * 1000 + 11, 1000, flags=flags)
    assert ours == theirs
    got = [int(Ether(seg)[TCP].flags) for seg in ours]
    assert got[0] & CWR == flags & CWR and not any(f & CWR for f in got[1:])
    assert got[-1] & (FIN | PSH) == flags & (FIN | PSH)
    assert not any(f & (FIN | PSH) for f in got[:-1])
    assert all(f & ECE == flags & ECE for f in got)


def test_one_segment_keeps_every_flag() -> None:
    flags = ACK | CWR | ECE | PSH | FIN
    ours, theirs = _cut(Flow(), 500, 1448, flags=flags)
    assert ours == theirs and int(Ether(ours[0])[TCP].flags) == flags


@pytest.mark.parametrize(("seq", "ip_id"), [(0xFFFFFFFF - 1500, 0xFFFE), (0xFFFFFFFF, 0xFFFF)])
def test_seq_and_ip_id_wrap_around(seq: int, ip_id: int) -> None:
    ours, theirs = _cut(Flow(), 4 * 1000, 1000, seq=seq, ip_id=ip_id)
    assert ours == theirs
    assert [Ether(s)[IP].id for s in ours] == [(ip_id + i) & 0xFFFF for i in range(4)]


def test_segments_have_valid_checksums_per_scapy() -> None:
    ours, _ = _cut(Flow(ip_options="rr", vlan=7), 10001, 1333)
    assert all(scapy_valid_checksums(seg) for seg in ours)


def test_partial_field_does_not_matter_addresses_are_summed_again() -> None:
    """The flow tables may rewrite an address after the VM computed the partial sum."""
    flow = Flow(dst="10.9.9.9")
    data = PAYLOAD[:3000]
    stale = partial_checksum(super_frame(Flow(), data, seq=5, ip_id=1))
    rewritten = bytearray(super_frame(flow, data, seq=5, ip_id=1))
    tcp_check = len(rewritten) - len(data) - 32 + 16  # Flow's "ts" options: 32-byte header
    rewritten[tcp_check : tcp_check + 2] = stale[tcp_check : tcp_check + 2]
    assert segment_tcp(SuperFrame(bytes(rewritten), 1000)) == expected_segments(
        flow, data, 1000, seq=5, ip_id=1)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_partial_checksum_is_the_pseudo_header_sum(shape: str) -> None:
    whole = super_frame(SHAPES[shape], PAYLOAD[:2001], seq=1)
    sf = partial_checksum(whole)
    where = l4_offsets(whole)
    assert where is not None
    l4 = where[1]
    assert len(sf) == len(whole)
    assert sf[: l4 + 16] == whole[: l4 + 16] and sf[l4 + 18 :] == whole[l4 + 18 :]
    assert struct.unpack_from("!H", sf, l4 + 16)[0] == partial_field(whole)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_offsets_and_describe(shape: str) -> None:
    flow = SHAPES[shape]
    whole = super_frame(flow, PAYLOAD[:3000], seq=1)
    pkt = Ether(whole)
    l3 = 18 if flow.vlan is not None else 14
    ip_len = 40 if flow.v6 else pkt[IP].ihl * 4
    thlen = pkt[TCP].dataofs * 4
    assert l4_offsets(whole) == (l3, l3 + ip_len, thlen)
    gso = describe(whole, 1448)
    assert gso == Gso(1448, 3, l3 + ip_len, l3 + ip_len + thlen, flow.v6)
    assert gso.gso_type == (VIRTIO_GSO_TCPV6 if flow.v6 else VIRTIO_GSO_TCPV4)
    assert TCP_CSUM_OFFSET == 16
    assert gso.wire_bytes(len(whole)) == sum(map(len, segment_tcp(SuperFrame(whole, 1448))))
    assert describe(whole, 3000).segments == 1 and describe(whole, 2999).segments == 2


@given(flow=flows, size=st.integers(0, 6000), mss=st.integers(1, 3000),
       seq=st.integers(0, 0xFFFFFFFF), ip_id=st.integers(0, 0xFFFF),
       flags=st.sets(st.sampled_from([FIN, PSH, ACK, ECE, CWR])).map(sum))
@settings(max_examples=150, deadline=None)
def test_any_super_frame_segments_like_scapy(flow: Flow, size: int, mss: int, seq: int,
                                             ip_id: int, flags: int) -> None:
    if -(-size // mss) > 200:  # keep scapy's side fast
        mss = -(-size // 200)
    data = PAYLOAD[:size]
    sf = partial_checksum(super_frame(flow, data, seq=seq, flags=flags, ip_id=ip_id))
    ours = segment_tcp(SuperFrame(sf, mss))
    assert ours == expected_segments(flow, data, mss, seq=seq, flags=flags, ip_id=ip_id)
    assert describe(sf, mss).segments == len(ours)


# --- refusals: PacketError and nothing else -----------------------------------------------

def _raises(data: bytes, mss: int = 1000, *, describe_too: bool = True) -> PacketError:
    with pytest.raises(PacketError) as err:
        segment_tcp(SuperFrame(data, mss))
    if describe_too:  # describe() promises the frame-shape and mss refusals, not the size one
        with pytest.raises(PacketError):
            describe(data, mss)
    return err.value


GOOD = super_frame(Flow(), PAYLOAD[:3000], seq=1)


@pytest.mark.parametrize("data", [
    bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / Raw(b"x" * 3000)),
    bytes(Ether() / IPv6() / UDP() / Raw(b"x" * 3000)),
    bytes(Ether() / IPv6() / IPv6ExtHdrHopByHop() / TCP() / Raw(b"x" * 3000)),
    bytes(Ether(type=0x0806) / Raw(b"x" * 3000)),
    bytes(Ether() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / IP() / TCP() / Raw(b"x" * 3000)),
], ids=["udp", "udp6", "v6-extension-header", "arp", "qinq"])
def test_non_tcp_is_refused(data: bytes) -> None:
    _raises(data)
    assert l4_offsets(data) is None
    with pytest.raises(PacketError):
        partial_checksum(data)


@pytest.mark.parametrize(("frag_flags", "frag"), [(1, 0), (0, 185), (1, 185)],
                         ids=["MF", "offset", "MF+offset"])
def test_fragments_are_refused(frag_flags: int, frag: int) -> None:
    data = bytes(Ether() / IP(flags=frag_flags, frag=frag) / TCP() / Raw(b"x" * 3000))
    assert "fragment" in str(_raises(data))


@pytest.mark.parametrize("cut", [0, 13, 17, 14 + 19, 14 + 20 + 19, 14 + 20 + 31])
def test_truncated_headers_are_refused(cut: int) -> None:
    _raises(GOOD[:cut])
    assert l4_offsets(GOOD[:cut]) is None


def test_bad_header_length_fields_are_refused() -> None:
    bad_ihl = bytearray(GOOD)
    bad_ihl[14] = 0x44
    _raises(bytes(bad_ihl))
    bad_doff = bytearray(GOOD)
    bad_doff[14 + 20 + 12] = 0x40
    _raises(bytes(bad_doff))
    bad_version = bytearray(GOOD)
    bad_version[14] = 0x65
    _raises(bytes(bad_version))


@pytest.mark.parametrize("mss", [0, -1])
def test_mss_below_one_is_refused(mss: int) -> None:
    _raises(GOOD, mss)


def test_segments_above_65535_bytes_are_refused() -> None:
    payload = PAYLOAD[:70000]
    v4 = partial_checksum(frame(Flow(tcp_options="none"), b"", seq=1) + payload)
    _raises(v4, 65536 - 40, describe_too=False)  # 40 header bytes + 65496 bytes = 65536
    assert len(segment_tcp(SuperFrame(v4, 65535 - 40))[0]) == 14 + 65535
    v6 = partial_checksum(frame(Flow(v6=True, tcp_options="none"), b"", seq=1) + payload)
    # IPv6's payload length counts the TCP header but not the IPv6 one
    _raises(v6, 65536 - 20, describe_too=False)
    assert len(segment_tcp(SuperFrame(v6, 65535 - 20))[0]) == 14 + 40 + 65535
    # a huge mss is fine while the payload is small
    assert len(segment_tcp(SuperFrame(GOOD, 10**6))) == 1


@given(data=st.binary(max_size=200), mss=st.integers(-2, 3000))
@settings(max_examples=500, deadline=None)
def test_random_bytes_raise_nothing_but_packet_error(data: bytes, mss: int) -> None:
    for call in (lambda: segment_tcp(SuperFrame(data, mss)), lambda: describe(data, mss),
                 lambda: partial_checksum(data), lambda: l4_offsets(data)):
        with suppress(PacketError):
            call()


@given(prefix=st.sampled_from([
    bytes(Ether() / IP() / TCP())[:14], bytes(Ether() / IPv6() / TCP())[:14],
    bytes(Ether() / Dot1Q() / IP() / TCP())[:18]]), data=st.binary(max_size=120),
    mss=st.integers(1, 50))
@settings(max_examples=300, deadline=None)
def test_random_headers_raise_nothing_but_packet_error(prefix: bytes, data: bytes,
                                                       mss: int) -> None:
    frame_ = prefix + data
    with suppress(PacketError):
        segment_tcp(SuperFrame(frame_, mss))


def _partial(frame: bytes, l4: int, offset: int) -> bytes:
    """What Linux leaves in a CHECKSUM_PARTIAL packet: the folded pseudo-header sum (RFC 768 /
    793 pseudo-header: addresses, protocol, L4 length), not complemented."""
    proto, length = frame[23], len(frame) - l4
    total = int.from_bytes(frame[26:34], "big") + proto + length
    field = total % 0xFFFF or 0xFFFF
    return frame[:l4 + offset] + field.to_bytes(2, "big") + frame[l4 + offset + 2:]


def test_a_partial_udp_or_tcp_checksum_copied_out_of_the_kernel_is_finished_as_scapy_computes_it(
        ) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    from tunnelnet.packet.offload import finish_if_partial

    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.1.0.1",
                                                                       dst="10.1.0.2")
    for l4, offset in ((UDP(sport=4000, dport=5400) / (b"x" * 33), 6),
                       (TCP(sport=4000, dport=80, flags="PA", seq=7) / (b"y" * 101), 16)):
        whole = bytes(base / l4)  # scapy computes the checksums: the oracle
        partial = _partial(whole, 34, offset)
        assert partial != whole
        assert finish_if_partial(partial) == whole
        assert finish_if_partial(whole) == whole  # finished already: untouched
        corrupt = whole[:34 + offset] + b"\x12\x34" + whole[34 + offset + 2:]
        assert finish_if_partial(corrupt) == corrupt  # a bad checksum stays bad
