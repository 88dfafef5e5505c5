"""coalesce_tcp (software GRO) against scapy-built segments: runs of segments GRO would merge
become the super-frame they were cut from, every refusal of the module's docstring keeps
frames apart, order is kept and frames that are not candidates pass through as they were."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from support.tcp_frames import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Flow,
    expected_segments,
    flows,
    frame,
    scapy_valid_checksums,
    super_frame,
    tcp_payload,
)
from tunnelnet.packet.coalesce import MIN_CANDIDATE, coalesce_tcp
from tunnelnet.packet.offload import Gso, SuperFrame, l4_offsets, partial_checksum, segment_tcp

PAYLOAD = bytes(range(7, 256)) * 300
MSS = 1000
SEQ = 5000
ID = 300

Shape = list[int | None]  # per output frame: how many segments it merges, None = passed on


def _shape(out: list[tuple[bytes, Gso | None]]) -> Shape:
    return [None if gso is None else gso.segments for _, gso in out]


PLAIN = Flow()


def _segs(flow: Flow = PLAIN, n: int = 4, mss: int = MSS, *, flags: int = ACK,
          last: int | None = None) -> list[bytes]:
    """n scapy-built segments of one flow (the last ``last`` bytes long, default mss)."""
    size = (n - 1) * mss + (mss if last is None else last)
    return expected_segments(flow, PAYLOAD[:size], mss, seq=SEQ, flags=flags, ip_id=ID)


def _expected_super(flow: Flow, size: int, *, flags: int = ACK, seq: int = SEQ,
                    ip_id: int = ID) -> bytes:
    """The super-frame scapy builds (IPv4 header checksum valid) with a partial TCP field."""
    return partial_checksum(super_frame(flow, PAYLOAD[:size], seq=seq, flags=flags,
                                        ip_id=ip_id))


def _gso(flow: Flow, mss: int, segments: int) -> Gso:
    one = frame(flow, b"x", seq=0)
    where = l4_offsets(one)
    assert where is not None
    _, l4, thlen = where
    return Gso(mss, segments, l4, l4 + thlen, flow.v6)


def _ip_checksum_valid(data: bytes) -> bool:
    pkt = Ether(data)
    if IP not in pkt:
        return True
    ours = pkt[IP].chksum
    del pkt[IP].chksum
    return bool(Ether(bytes(pkt))[IP].chksum == ours)


SHAPES = {
    "v4": Flow(),
    "v4-ip-options": Flow(ip_options="rr", tcp_options="mixed"),
    "v4-vlan-no-tcp-options": Flow(vlan=12, tcp_options="none"),
    "v6": Flow(v6=True),
    "v6-vlan": Flow(v6=True, vlan=4000, flow_label=0x12345, tos=0x20),
}


# --- merging -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("size", "mss"), [(4000, 1000), (4100, 1000), (3999, 1000),
                                           (1447 * 5 + 333, 1447), (64000, 8000)])
@pytest.mark.parametrize("flags", [ACK, ACK | PSH, ACK | ECE, ACK | ECE | PSH])
def test_segmenting_then_coalescing_gives_back_the_super_frame(shape: str, size: int, mss: int,
                                                              flags: int) -> None:
    flow = SHAPES[shape]
    whole = _expected_super(flow, size, flags=flags)
    segments = segment_tcp(SuperFrame(whole, mss))
    out = coalesce_tcp(segments)
    assert len(out) == 1
    merged, gso = out[0]
    assert merged == whole
    assert _ip_checksum_valid(merged)
    assert gso == _gso(flow, mss, len(segments))
    # and the datapath can cut it again into the very same frames
    assert segment_tcp(SuperFrame(merged, gso.mss)) == segments


def test_scapy_built_segments_merge_too() -> None:
    flow = Flow(ip_options="max", tcp_options="max")
    out = coalesce_tcp(_segs(flow, 5, last=77))
    assert out == [(_expected_super(flow, 4 * MSS + 77), _gso(flow, MSS, 5))]


def test_seq_and_ip_id_wrap_around_inside_a_run() -> None:
    flow = Flow()
    data = PAYLOAD[:4 * MSS]
    segs = expected_segments(flow, data, MSS, seq=0xFFFFFFFF - 1500, ip_id=0xFFFE)
    assert coalesce_tcp(segs) == [
        (_expected_super(flow, 4 * MSS, seq=0xFFFFFFFF - 1500, ip_id=0xFFFE),
         _gso(flow, MSS, 4))]


def test_equal_ip_ids_merge_when_df_is_set() -> None:
    flow = Flow()
    segs = [frame(flow, PAYLOAD[i * MSS : (i + 1) * MSS], seq=SEQ + i * MSS, ip_id=ID)
            for i in range(3)]
    assert _shape(coalesce_tcp(segs)) == [3]
    no_df = flow.replace(df=False)
    segs = [frame(no_df, PAYLOAD[i * MSS : (i + 1) * MSS], seq=SEQ + i * MSS, ip_id=ID)
            for i in range(3)]
    assert _shape(coalesce_tcp(segs)) == [None, None, None]


def test_ipv6_has_no_id_to_check() -> None:
    assert _shape(coalesce_tcp(_segs(Flow(v6=True), 6))) == [6]


def test_run_of_exactly_65535_bytes_merges_one_more_byte_does_not() -> None:
    flow = Flow(tcp_options="none")  # IPv4 20 + TCP 20 header bytes
    mss = (65535 - 40) // 5  # 13099 * 5 + 40 = 65535
    fits = _segs(flow, 5, mss)
    out = coalesce_tcp(fits)
    assert _shape(out) == [5] and struct.unpack_from("!H", out[0][0], 16)[0] == 65535
    assert _shape(coalesce_tcp(_segs(flow, 5, mss, last=mss + 0))) == [5]
    over = expected_segments(flow, PAYLOAD[: 4 * mss + mss + 1], mss + 0, seq=SEQ, ip_id=ID)
    # 6 frames of which 5 fill the datagram: the 6th (1 byte, short) starts its own
    assert _shape(coalesce_tcp(over)) == [5, None]
    bigger = _segs(flow, 5, mss + 1)  # 5 * 13100 + 40 = 65540: the 5th does not fit
    assert _shape(coalesce_tcp(bigger)) == [4, None]


def test_ipv6_datagram_limit() -> None:
    flow = Flow(v6=True, tcp_options="none")  # IPv6 40 + TCP 20
    fits = (65535 - 60) // 5  # 13095
    assert _shape(coalesce_tcp(_segs(flow, 5, fits))) == [5]
    assert _shape(coalesce_tcp(_segs(flow, 5, fits + 1))) == [4, None]


def test_one_candidate_alone_is_passed_on_unchanged() -> None:
    seg = _segs(n=1)[0]
    out = coalesce_tcp([seg])
    assert out == [(seg, None)] and out[0][0] is seg


# --- refusals ------------------------------------------------------------------------------

def _rebuild(segs: list[bytes], index: int, change: Callable[[Ether], None]) -> list[bytes]:
    """segs with segment ``index`` changed by scapy (lengths and checksums recomputed)."""
    pkt = Ether(segs[index])
    change(pkt)
    if IP in pkt:
        del pkt[IP].chksum
        del pkt[IP].len
    else:
        del pkt[IPv6].plen
    del pkt[TCP].chksum
    out = list(segs)
    out[index] = bytes(pkt)
    assert scapy_valid_checksums(out[index])
    return out


def _set(layer: type, field: str, value: object) -> Callable[[Ether], None]:
    def change(pkt: Ether) -> None:
        setattr(pkt[layer], field, value)
    return change


def _corrupt(offset_from_l4: int | None = None, *, ip_checksum: bool = False,
             ) -> Callable[[bytes], bytes]:
    def corrupt(seg: bytes) -> bytes:
        where = l4_offsets(seg)
        assert where is not None
        at = where[0] + 10 if ip_checksum else where[1] + (offset_from_l4 or 0)
        data = bytearray(seg)
        data[at] ^= 0x5A
        return bytes(data)
    return corrupt


FIELD_CHANGES: dict[str, Callable[[Ether], None]] = {
    "sport": _set(TCP, "sport", 1),
    "dport": _set(TCP, "dport", 2),
    "ack": _set(TCP, "ack", 0x11223345),
    "window": _set(TCP, "window", 503),
    "options": _set(TCP, "options", [("NOP", None), ("NOP", None),
                                     ("Timestamp", (0x01020305, 0xA0B0C0D0))]),
    "timestamp-echo": _set(TCP, "options", [("NOP", None), ("NOP", None),
                                            ("Timestamp", (0x01020304, 0xA0B0C0D1))]),
    "urgent-pointer": _set(TCP, "urgptr", 9),
    "ttl": _set(IP, "ttl", 63),
    "tos": _set(IP, "tos", 0x10),
    "ecn-ce": _set(IP, "tos", 0x03),
    "dst-ip": _set(IP, "dst", "10.0.0.3"),
    "src-mac": _set(Ether, "src", "02:00:00:00:00:09"),
    "dst-mac": _set(Ether, "dst", "02:00:00:00:00:0a"),
    "df": _set(IP, "flags", 0),
}


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_a_different_header_field_keeps_frames_apart(field: str) -> None:
    segs = _segs(n=5)
    # one odd segment in the middle: it stands alone, the rest merges around it
    middle = _rebuild(segs, 2, FIELD_CHANGES[field])
    assert _shape(coalesce_tcp(middle)) == [2, None, 2]
    # from the third segment on the field differs: two runs, each merged
    tail = _rebuild(_rebuild(_rebuild(segs, 2, FIELD_CHANGES[field]), 3, FIELD_CHANGES[field]),
                    4, FIELD_CHANGES[field])
    out = coalesce_tcp(tail)
    assert _shape(out) == [2, 3]
    assert [p for _, p in map(tcp_payload, (f for f, _ in out))] == [
        PAYLOAD[: 2 * MSS], PAYLOAD[2 * MSS : 5 * MSS]]


@pytest.mark.parametrize(("field", "change"), [
    ("vlan", _set(Ether, "vlan", 13)),  # Dot1Q's field, found through Ether's layers
    ("vlan-prio", _set(Ether, "prio", 5)),
])
def test_a_different_vlan_tag_keeps_frames_apart(field: str, change: Callable[[Ether],
                                                                                None]) -> None:
    segs = _segs(Flow(vlan=12), 5)
    assert _shape(coalesce_tcp(_rebuild(segs, 2, change))) == [2, None, 2]


@pytest.mark.parametrize("field", ["flow-label", "traffic-class", "hop-limit", "src-ip"])
def test_a_different_ipv6_field_keeps_frames_apart(field: str) -> None:
    change = {"flow-label": _set(IPv6, "fl", 77), "traffic-class": _set(IPv6, "tc", 4),
              "hop-limit": _set(IPv6, "hlim", 3), "src-ip": _set(IPv6, "src", "2001:db8::9"),
              }[field]
    assert _shape(coalesce_tcp(_rebuild(_segs(Flow(v6=True), 5), 2, change))) == [2, None, 2]


def test_tagged_and_untagged_frames_do_not_merge() -> None:
    tagged = _segs(Flow(vlan=1), 2)
    untagged = _segs(Flow(), 4)
    assert _shape(coalesce_tcp(untagged[:2] + tagged[:0] + [
        frame(Flow(vlan=1), PAYLOAD[2 * MSS : 3 * MSS], seq=SEQ + 2 * MSS, ip_id=ID + 2)]
        + untagged[3:])) == [2, None, None]


def test_bad_ipv4_header_checksum_keeps_a_frame_apart() -> None:
    segs = _segs(n=5)
    segs[2] = _corrupt(ip_checksum=True)(segs[2])
    out = coalesce_tcp(segs)
    assert _shape(out) == [2, None, 2]
    assert out[1][0] is segs[2]


@pytest.mark.parametrize("corruption", ["tcp-checksum", "tcp-payload", "last-byte"])
@pytest.mark.parametrize(("n", "mss"), [(5, 1000), (3, 999), (2, 200)],
                         ids=["vectorised-sums", "odd-mss", "small-run"])
def test_bad_tcp_checksum_leaves_its_run_unmerged(corruption: str, n: int, mss: int) -> None:
    """The docstring: TCP checksums of a run are verified when it is merged, and a run with a
    bad segment is passed on unmerged (all of it: the receiver drops the bad one)."""
    spoil = {"tcp-checksum": _corrupt(16), "tcp-payload": _corrupt(40),
             "last-byte": lambda seg: seg[:-1] + bytes([seg[-1] ^ 1])}[corruption]
    for bad in range(n):
        segs = _segs(n=n, mss=mss)
        segs[bad] = spoil(segs[bad])
        out = coalesce_tcp(segs)
        assert _shape(out) == [None] * n
        assert all(got is sent for (got, _), sent in zip(out, segs, strict=True))
    # a bad one that is not part of the run (it does not follow on) spoils nothing
    segs = _segs(n=n, mss=mss)
    stray = spoil(_segs(n=1, mss=mss)[0])
    assert _shape(coalesce_tcp([*segs, stray])) == [n, None]


@given(data=st.data(), v6=st.booleans(), mss=st.sampled_from([300, 999, 1448]))
@settings(max_examples=300, deadline=None)
def test_a_corrupted_byte_never_gets_a_fresh_checksum(data: st.DataObject, v6: bool,
                                                      mss: int) -> None:
    """Flip any byte of any segment: whatever merges, cut again, gives back exactly the frames
    it was made of (no damaged byte is ever blessed by the super-frame's new checksum)."""
    segs = _segs(Flow(v6=v6), 5, mss)
    index = data.draw(st.integers(0, 4))
    at = data.draw(st.integers(0, len(segs[index]) - 1))
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    spoiled = bytearray(segs[index])
    spoiled[at] ^= bit
    segs[index] = bytes(spoiled)
    consumed = 0
    for merged, gso in coalesce_tcp(segs):
        if gso is None:
            assert merged is segs[consumed]
            consumed += 1
            continue
        assert segment_tcp(SuperFrame(merged, gso.mss)) == segs[consumed:
                                                                consumed + gso.segments]
        consumed += gso.segments
    assert consumed == 5


@pytest.mark.parametrize("flag", [SYN, RST, URG, FIN, CWR])
@pytest.mark.parametrize("where", [0, 2, 4])
def test_refused_flags_keep_a_frame_apart(flag: int, where: int) -> None:
    segs = _rebuild(_segs(n=5), where, _set(TCP, "flags", ACK | flag))
    want: Shape = {0: [None, 4], 2: [2, None, 2], 4: [4, None]}[where]
    assert _shape(coalesce_tcp(segs)) == want


def test_fin_and_cwr_super_frames_come_back_as_merged_middle() -> None:
    """A super-frame with FIN and CWR: the first segment (CWR) and the last (FIN) stay apart."""
    flow = Flow()
    size = 5 * MSS
    whole = super_frame(flow, PAYLOAD[:size], seq=SEQ, flags=ACK | CWR | FIN, ip_id=ID)
    segs = segment_tcp(SuperFrame(partial_checksum(whole), MSS))
    out = coalesce_tcp(segs)
    assert _shape(out) == [None, 3, None]
    assert out[1][0] == partial_checksum(frame(flow, PAYLOAD[MSS : 4 * MSS], seq=SEQ + MSS,
                                               ip_id=ID + 1))


def test_different_ece_keeps_frames_apart() -> None:
    segs = _rebuild(_segs(n=5), 2, _set(TCP, "flags", ACK | ECE))
    assert _shape(coalesce_tcp(segs)) == [2, None, 2]


def test_psh_in_the_middle_ends_the_run_after_that_segment() -> None:
    segs = _rebuild(_segs(n=5), 1, _set(TCP, "flags", ACK | PSH))
    out = coalesce_tcp(segs)
    assert _shape(out) == [2, 3]
    assert int(Ether(out[0][0])[TCP].flags) == ACK | PSH
    assert int(Ether(out[1][0])[TCP].flags) == ACK
    assert out[0][0] == _expected_super(Flow(), 2 * MSS, flags=ACK | PSH)


def test_seq_gap_splits_the_run() -> None:
    flow = Flow()
    segs = [frame(flow, PAYLOAD[i * MSS : (i + 1) * MSS], seq=SEQ + i * MSS + (1 if i >= 2
                                                                              else 0),
                  ip_id=ID + i) for i in range(4)]
    assert _shape(coalesce_tcp(segs)) == [2, 2]
    reordered = [segs[0], segs[2], segs[1], segs[3]]
    assert _shape(coalesce_tcp(reordered)) == [None, None, None, None]


def test_retransmission_does_not_merge() -> None:
    segs = _segs(n=3)
    # the copy does not follow the run, so it starts a new one, which the next one follows
    assert _shape(coalesce_tcp([segs[0], segs[1], segs[1], segs[2]])) == [2, 2]
    assert _shape(coalesce_tcp([segs[0], segs[1], segs[0], segs[2]])) == [2, None, None]


def test_ip_id_not_counting_up_by_one_splits_the_run() -> None:
    flow = Flow()
    segs = [frame(flow, PAYLOAD[i * MSS : (i + 1) * MSS], seq=SEQ + i * MSS,
                  ip_id=ID + i + (5 if i >= 2 else 0)) for i in range(4)]
    assert _shape(coalesce_tcp(segs)) == [2, 2]
    down = [frame(flow, PAYLOAD[i * MSS : (i + 1) * MSS], seq=SEQ + i * MSS, ip_id=ID - i)
            for i in range(3)]
    assert _shape(coalesce_tcp(down)) == [None, None, None]


def test_shorter_segment_in_the_middle_ends_the_run_after_it() -> None:
    flow = Flow()
    sizes = [MSS, MSS - 100, MSS, MSS]
    offsets = [sum(sizes[:i]) for i in range(4)]
    segs = [frame(flow, PAYLOAD[o : o + s], seq=SEQ + o, ip_id=ID + i)
            for i, (o, s) in enumerate(zip(offsets, sizes, strict=True))]
    assert _shape(coalesce_tcp(segs)) == [2, 2]


def test_longer_segment_after_the_first_starts_a_new_run() -> None:
    flow = Flow()
    sizes = [MSS, MSS + 1, MSS + 1]
    offsets = [sum(sizes[:i]) for i in range(3)]
    segs = [frame(flow, PAYLOAD[o : o + s], seq=SEQ + o, ip_id=ID + i)
            for i, (o, s) in enumerate(zip(offsets, sizes, strict=True))]
    assert _shape(coalesce_tcp(segs)) == [None, 2]


def test_zero_payload_keeps_a_frame_apart() -> None:
    flow = Flow(ip_options="max", tcp_options="max")  # 134 bytes of headers: a candidate size
    segs = _segs(flow, 4)
    empty = frame(flow, b"", seq=SEQ + 2 * MSS, ip_id=ID + 2)
    assert len(empty) >= MIN_CANDIDATE
    out = coalesce_tcp([*segs[:2], empty, *segs[2:]])
    assert _shape(out) == [2, None, 2] and out[1][0] is empty
    out = coalesce_tcp([*segs[:2], empty])
    assert _shape(out) == [2, None] and out[1][0] is empty


def test_ethernet_padding_keeps_a_frame_apart() -> None:
    segs = _segs(n=5)
    padded = segs[2] + b"\0" * 6
    out = coalesce_tcp([*segs[:2], padded, *segs[3:]])
    assert _shape(out) == [2, None, 2] and out[1][0] is padded


def test_ipv4_total_length_lying_keeps_a_frame_apart() -> None:
    segs = _segs(n=3)
    short = _rebuild(segs, 1, _set(IP, "len", 0))  # placeholder, fixed below
    pkt = Ether(segs[1])
    pkt[IP].len = len(segs[1]) - 14 - 2
    del pkt[IP].chksum
    short[1] = bytes(pkt)
    assert _shape(coalesce_tcp(short)) == [None, None, None]


# --- order and pass-through ----------------------------------------------------------------

def _others() -> list[bytes]:
    return [
        bytes(Ether() / IP() / UDP() / Raw(b"u" * 1200)),
        bytes(Ether() / ARP()),
        bytes(Ether(type=0x88B5) / Raw(b"raw" * 500)),
        bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A")),  # pure ACK
        frame(Flow(), b"small", seq=1),  # a TCP segment below MIN_CANDIDATE
        b"",
        b"\x01\x02\x03",
        bytes(Ether() / IP(flags=1) / TCP() / Raw(b"f" * 1000)),  # a fragment
        bytes(Ether() / IPv6() / UDP() / Raw(b"v" * 1000)),
    ]


def test_non_tcp_and_short_frames_pass_through_unchanged() -> None:
    others = _others()
    out = coalesce_tcp(others)
    assert len(out) == len(others)
    for (got, gso), sent in zip(out, others, strict=True):
        assert got is sent and gso is None


def test_other_frames_between_segments_end_runs_and_keep_their_place() -> None:
    segs = _segs(n=6)
    others = _others()
    frames = [*segs[:2], others[0], *segs[2:5], others[3], segs[5]]
    out = coalesce_tcp(frames)
    assert _shape(out) == [2, None, 3, None, None]
    assert out[1][0] is others[0] and out[3][0] is others[3] and out[4][0] is segs[5]


def test_nothing_in_nothing_out() -> None:
    assert coalesce_tcp([]) == []


@st.composite
def two_flows(draw: st.DrawFn) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    base = draw(flows)
    other = base.replace(sport=base.sport ^ 1)  # the same but for one port
    mss = draw(st.integers(200, 1500))
    frames_by_flow = []
    payloads = {}
    for flow in (base, other):
        n = draw(st.integers(1, 8))
        last = draw(st.integers(1, mss))
        data = draw(st.binary(min_size=1, max_size=1)) * ((n - 1) * mss + last)
        flags = ACK | (PSH if draw(st.booleans()) else 0)
        frames_by_flow.append(expected_segments(flow, data, mss, seq=draw(
            st.integers(0, 0xFFFFFFFF)), flags=flags, ip_id=draw(st.integers(0, 0xFFFF))))
        payloads[(flow.sport, flow.dport)] = data
    picks = draw(st.permutations([0] * len(frames_by_flow[0]) + [1] * len(frames_by_flow[1])))
    iters = [iter(frames_by_flow[0]), iter(frames_by_flow[1])]
    return [next(iters[i]) for i in picks], payloads


@given(two_flows())
@settings(max_examples=150, deadline=None)
def test_interleaved_flows_never_merge_and_keep_their_bytes(
        case: tuple[list[bytes], dict[tuple[int, int], bytes]]) -> None:
    frames, payloads = case
    out = coalesce_tcp(frames)
    assert sum(1 if gso is None else gso.segments for _, gso in out) == len(frames)
    got: dict[tuple[int, int], bytes] = dict.fromkeys(payloads, b"")
    consumed = 0
    for merged, gso in out:
        ports, data = tcp_payload(merged)
        got[ports] += data
        if gso is None:
            assert merged is frames[consumed]
            consumed += 1
            continue
        # a merged frame stands for consecutive frames of one flow: cutting it again with its
        # Gso gives back exactly those (so nothing of the other flow is inside)
        assert segment_tcp(SuperFrame(merged, gso.mss)) == frames[consumed:
                                                                  consumed + gso.segments]
        assert _ip_checksum_valid(merged)
        consumed += gso.segments
    assert got == payloads


@given(flow=flows, size=st.integers(1, 12000), mss=st.integers(200, 3000),
       seq=st.integers(0, 0xFFFFFFFF), ip_id=st.integers(0, 0xFFFF), psh=st.booleans())
@settings(max_examples=150, deadline=None)
def test_any_segmented_super_frame_coalesces_back(flow: Flow, size: int, mss: int, seq: int,
                                                  ip_id: int, psh: bool) -> None:
    flags = ACK | (PSH if psh else 0)
    whole = _expected_super(flow, size, flags=flags, seq=seq, ip_id=ip_id)
    segments = segment_tcp(SuperFrame(whole, mss))
    out = coalesce_tcp(segments)
    short_tail = len(segments) > 1 and len(segments[-1]) < MIN_CANDIDATE
    if len(segments) == 1:
        assert out == [(segments[0], None)]
    elif short_tail and len(segments) == 2:
        assert out == [(segments[0], None), (segments[1], None)]
    elif short_tail:  # the short last one is not a candidate: the others merge without it
        head = partial_checksum(super_frame(flow, PAYLOAD[: (len(segments) - 1) * mss], seq=seq,
                                            ip_id=ip_id))  # PSH stays on the last segment
        assert out == [(head, _gso(flow, mss, len(segments) - 1)), (segments[-1], None)]
    else:
        assert out == [(whole, _gso(flow, mss, len(segments)))]


@given(sizes=st.lists(st.sampled_from([1, 80, 500, 999, 1000, 1000, 1000]), min_size=1,
                      max_size=12),
       v6=st.booleans(), psh=st.sets(st.integers(0, 11)), zeros=st.booleans())
@settings(max_examples=400, deadline=None)
def test_any_run_of_sizes_merges_only_what_cuts_back_into_it(sizes: list[int], v6: bool,
                                                             psh: set[int], zeros: bool) -> None:
    """Segments of one flow with contiguous seq and ids but any lengths: coalescing raises
    nothing, and a merged frame always cuts back (at its Gso's mss) into exactly the frames it
    stands for, so a short segment can only be the last of a run. (All-zero payloads make
    every chunk sum 0, so checksums verify whatever the chunking: only the rules keep runs
    apart.)"""
    flow = Flow(v6=v6, ip_options="max", tcp_options="max")  # every frame >= MIN_CANDIDATE
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    stream = bytes(sum(sizes)) if zeros else PAYLOAD
    segs = [frame(flow, stream[o : o + s], seq=SEQ + o, ip_id=ID + i,
                  flags=ACK | (PSH if i in psh else 0))
            for i, (o, s) in enumerate(zip(offsets, sizes, strict=True))]
    out = coalesce_tcp(segs)
    consumed = 0
    for merged, gso in out:
        if gso is None:
            assert merged is segs[consumed]
            consumed += 1
            continue
        assert segment_tcp(SuperFrame(merged, gso.mss)) == segs[consumed:
                                                                consumed + gso.segments]
        consumed += gso.segments
    assert consumed == len(segs)
