"""coalesce.signature: frames it calls alike must get the same flow key from the parser.

The datapath walks its tables once for a run of frames with equal signature and length, using
the first frame's key for all of them. The oracle is the flow-key parser itself, applied to
every frame alone: for any two frames with equal signature and length, the keys (or the
PacketError verdicts) must be equal. Frames come from scapy with random fields, then bytes are
changed at random places, inside and outside the signature."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tunnelnet.packet.coalesce import flow_runs, signature
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.packet.offload import Gso


@st.composite
def frames(draw: st.DrawFn, batchable: bool = False) -> bytes:
    """Random frames; ``batchable``: only kinds signature() takes (untagged ICMP/TCP/UDP)."""
    proto = draw(st.sampled_from(["udp", "tcp", "icmp", *([] if batchable else ["other"])]))
    l4 = {"udp": UDP(sport=draw(st.integers(1, 65535)), dport=draw(st.integers(1, 65535))),
          "tcp": TCP(sport=draw(st.integers(1, 65535)), dport=draw(st.integers(1, 65535)),
                     flags=draw(st.integers(0, 0xFF)), seq=draw(st.integers(0, 2**32 - 1))),
          "icmp": ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255))),
          "other": Raw(b"\0" * 8)}[proto]
    ip = IP(src=draw(st.ip_addresses(v=4)).exploded, dst=draw(st.ip_addresses(v=4)).exploded,
            tos=draw(st.integers(0, 255)), ttl=draw(st.integers(0, 255)),
            id=draw(st.integers(0, 65535)), flags=draw(st.sampled_from([0, 2])))
    if proto == "other":
        ip.proto = draw(st.sampled_from([47, 89, 132]))
    eth = Ether(src="02:00:00:00:00:01", dst=draw(st.sampled_from(
        ["02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"])))
    if not batchable and draw(st.booleans()):
        eth = eth / Dot1Q(vlan=draw(st.integers(0, 4095)))
    # signature() wants 48 bytes at least (an Ethernet frame is 60 on a wire)
    payload = Raw(draw(st.binary(min_size=14 if batchable else 0, max_size=64)))
    return bytes(eth / ip / l4 / payload)


def _key(frame: bytes) -> object:
    try:
        return extract_flow_key(frame, 1)
    except PacketError as exc:
        return ("refused", str(exc))


# the assume() below throws away the many draws whose changes hit the signature itself
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.one_of(frames(), frames(batchable=True), frames(batchable=True)),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_frames_with_equal_signature_and_length_have_equal_flow_keys(
        frame: bytes, changes: list[tuple[int, int]]) -> None:
    other = bytearray(frame)
    for where, value in changes:
        if where < len(other):
            other[where] = value
    sig = signature(frame)
    assume(sig is not None and signature(bytes(other)) == sig)
    assert _key(bytes(other)) == _key(frame)


@settings(max_examples=300, deadline=None)
@given(frames(batchable=True), st.integers(0, 65535), st.binary(min_size=2, max_size=2))
def test_id_and_checksum_do_not_split_a_flow(frame: bytes, ident: int, csum: bytes) -> None:
    """What differs between datagrams of one stream (IPv4 id, header checksum, payload) keeps
    them in one run; what the tables read (a port, the TTL) splits them."""
    assert signature(frame) is not None
    other = bytearray(frame)
    other[18:20] = ident.to_bytes(2, "big")
    other[24:26] = csum
    assert signature(bytes(other)) == signature(frame)
    other[22] ^= 0x01  # TTL
    assert signature(bytes(other)) != signature(frame)


def test_runs_keep_order_and_join_only_frames_of_one_flow() -> None:
    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
        src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=5001)
    a1, a2 = (bytes(base / Raw(b"x" * 40)) for _ in range(2))
    a3 = bytearray(a1)
    a3[18:20] = b"\x12\x34"  # another id: same flow
    b1 = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
        src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=5002) / Raw(b"x" * 40))
    short = bytes(base / Raw(b"x" * 20))
    gso = Gso(1000, 3, 34, 54, False)
    items = [(a1, None), (a2, None), (bytes(a3), None), (b1, None), (a1, None), (short, None),
             (a1, gso), (a1, None)]
    runs = flow_runs(items)
    assert [(len(frames), g) for frames, g in runs] == [(3, None), (1, None), (1, None),
                                                          (1, None), (1, gso), (1, None)]
    assert [f for frames, _ in runs for f in frames] == [f for f, _ in items]


def test_the_echo_requests_of_one_ping_share_a_signature_and_a_flow_key() -> None:
    # id, sequence number and so the ICMP checksum differ from echo to echo; the flow key
    # holds only type and code, so the datapath may follow one plan for all of them
    echoes = [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                    / IP(src="10.0.0.1", dst="10.0.0.2", id=n)
                    / ICMP(type=8, id=77, seq=n) / Raw(b"p" * 56)) for n in range(1, 4)]
    assert len({signature(e) for e in echoes}) == 1
    keys = [extract_flow_key(e, 1, None) for e in echoes]
    assert keys[0] == keys[1] == keys[2]
    reply = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="10.0.0.1", dst="10.0.0.2", id=1)
                  / ICMP(type=0, id=77, seq=1) / Raw(b"p" * 56))
    assert signature(reply) != signature(echoes[0])
