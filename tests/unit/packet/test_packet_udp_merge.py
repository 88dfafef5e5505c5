"""merge_udp against scapy-built datagrams: runs GRO would merge become one super-frame whose
headers say what Linux's UDP GSO needs, and every refusal the module's docstring names keeps
the datagrams apart. Expected values come from scapy (lengths, checksums) and from the
RFC 768 pseudo-header, computed here independently."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from tunnelnet.packet.udp_merge import HEADER_LEN, MAX_SEGMENTS, merge_udp

SRC, DST = "10.0.0.1", "10.0.0.2"


def datagram(n: int, size: int = 64, *, first_id: int = 100, df: bool = True,
             change: Callable[[Packet], None] | None = None) -> bytes:
    ip = IP(src=SRC, dst=DST, id=(first_id + n) & 0xFFFF, flags="DF" if df else 0, ttl=64)
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / UDP(
        sport=40000, dport=5201) / Raw(bytes([n & 0xFF]) * size)
    if change is not None:
        change(pkt)
    return bytes(pkt)


def run(count: int, size: int = 64, **kw: object) -> list[bytes]:
    return [datagram(n, size, **kw) for n in range(count)]  # type: ignore[arg-type]


def pseudo_sum(udp_len: int) -> int:
    words = struct.unpack("!4H", bytes(map(int, (SRC + "." + DST).split("."))))
    total = sum(words) + 17 + udp_len
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("count,size", [(2, 64), (64, 64), (10, 1), (7, 1401), (3, 1472)])
def test_a_run_becomes_one_super_frame_with_gso_headers(count: int, size: int) -> None:
    frames = run(count, size)
    merged = merge_udp(frames)
    assert merged is not None
    frame, gso_size = merged
    assert gso_size == size
    parsed = Ether(frame)
    ip, udp = parsed[IP], parsed[UDP]
    assert ip.len == 20 + 8 + count * size
    assert ip.id == 100  # the first datagram's: segmentation counts up from it
    rebuilt = IP(bytes(ip))  # the header checksum is what scapy computes for the header
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == ip.chksum
    assert udp.len == 8 + count * size
    # checksum-partial: the folded pseudo-header sum for the whole UDP length
    assert udp.chksum == pseudo_sum(8 + count * size)
    assert frame[HEADER_LEN:] == b"".join(f[HEADER_LEN:] for f in frames)
    assert frame[:14] == frames[0][:14]


def test_equal_ids_merge_with_df_and_not_without() -> None:
    same_id = [datagram(0, first_id=7) for _ in range(4)]
    assert merge_udp(same_id) is not None
    no_df = [datagram(0, first_id=7, df=False) for _ in range(4)]
    assert merge_udp(no_df) is None


def test_ids_wrap_around() -> None:
    assert merge_udp(run(5, first_id=0xFFFE)) is not None


def test_zero_udp_checksums_are_accepted() -> None:
    def zero(p: Packet) -> None:
        p[UDP].chksum = 0

    assert merge_udp(run(3, change=zero)) is not None


def _bad(at: int) -> Callable[[list[bytes]], list[bytes]]:
    def spoil(frames: list[bytes]) -> list[bytes]:
        frame = bytearray(frames[2])
        frame[at] ^= 0x01
        return [*frames[:2], bytes(frame), *frames[3:]]
    return spoil


@pytest.mark.parametrize("spoil,why", [
    (_bad(60), "a payload byte changed: the UDP checksum no longer holds"),
    (_bad(40), "a UDP checksum byte changed"),
    (_bad(25), "the IPv4 header checksum is wrong"),
    (_bad(22), "another TTL"),
    (_bad(15), "another TOS"),
    (_bad(35), "another source port"),
    (_bad(5), "another destination MAC"),
    (lambda f: [f[0], f[2], f[1], *f[3:]], "ids out of order"),
    (lambda f: [*f[:2], datagram(2, 65), *f[3:]], "another size"),
    (lambda f: f[:1], "a single datagram"),
    (lambda f: f + [f[-1]] * (MAX_SEGMENTS + 1 - len(f)), "more than 64"),
])
def test_what_gro_would_not_merge_is_refused(spoil: Callable[[list[bytes]], list[bytes]],
                                              why: str) -> None:
    assert merge_udp(run(5)) is not None
    assert merge_udp(spoil(run(5))) is None, why


def test_ids_without_df_must_count_up() -> None:
    frames = run(4, df=False)
    assert merge_udp(frames) is not None
    assert merge_udp([frames[0], frames[0], frames[1], frames[2]]) is None


@pytest.mark.parametrize("make", [
    lambda n: bytes(Ether() / Dot1Q(vlan=5) / IP(src=SRC, dst=DST, id=n) / UDP() / Raw(b"x" * 64)),
    lambda n: bytes(Ether() / IP(src=SRC, dst=DST, id=n) / TCP() / Raw(b"x" * 64)),
    lambda n: bytes(Ether() / IP(src=SRC, dst=DST, id=n, options=b"\x01" * 4) / UDP()
                    / Raw(b"x" * 64)),
    lambda n: bytes(Ether() / IP(src=SRC, dst=DST, id=n, flags="MF") / UDP() / Raw(b"x" * 64)),
    lambda n: bytes(Ether() / IP(src=SRC, dst=DST, id=n) / UDP() / Raw(b"x" * 2)) + b"\0" * 20,
])
def test_frames_that_are_not_plain_ipv4_udp_are_refused(make: Callable[[int], bytes]) -> None:
    assert merge_udp([make(n) for n in range(4)]) is None


def test_a_datagram_over_64_kib_in_all_is_refused() -> None:
    assert merge_udp(run(45, 1472)) is None  # 45 * 1480 + 20 > 65535
    assert merge_udp(run(44, 1472)) is not None


@settings(max_examples=200, deadline=None)
@given(count=st.integers(2, 12), size=st.integers(1, 300), at=st.integers(14, 341),
       bit=st.integers(0, 7))
def test_any_single_bit_flip_in_headers_or_payload_is_refused(count: int, size: int, at: int,
                                                              bit: int) -> None:
    frames = run(count, size)
    victim = count // 2
    frame = bytearray(frames[victim])
    if at >= len(frame):
        return
    frame[at] ^= 1 << bit
    frames[victim] = bytes(frame)
    # every flip is caught by a checksum or a header comparison (a flip in the UDP checksum
    # field that makes it zero would be 'not computed', which a 1-bit flip cannot reach
    # from a real checksum unless the checksum had one bit set)
    checksum = struct.unpack_from("!H", frame, 40)[0]
    if checksum == 0:
        return
    assert merge_udp(frames) is None
