"""TCP frames built by scapy, the independent side of the offload/coalesce tests.

A ``Flow`` says what every frame of one TCP flow carries (addresses, ports, options, ...);
``frame`` builds one frame of it with scapy computing lengths and checksums, ``super_frame``
the TSO super-frame and ``expected_segments`` what GSO must cut it into, segment by segment,
written from the rules (tcp_gso_segment: seq advanced, FIN/PSH on the last only, CWR on the
first only; inet_gso_segment: IPv4 id + index) and never from tunnelnet's own output.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import checksum

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

IP_OPTIONS: dict[str, list[Any]] = {
    "none": [],
    "rr": [IPOption_RR(routers=["192.0.2.7", "198.51.100.9"])],  # 11 bytes, padded to 12
    "nop": [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
    # the longest header: 40 bytes of options (IHL 15)
    "max": [IPOption_RR(routers=[f"192.0.2.{i}" for i in range(1, 10)])],  # 39 + 1 padding
}
TCP_OPTIONS: dict[str, list[Any]] = {
    "none": [],
    "ts": [("NOP", None), ("NOP", None), ("Timestamp", (0x01020304, 0xA0B0C0D0))],
    "mixed": [("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (7, 0xFFFFFFFF)),
              ("NOP", None)],
    # the longest header: 40 bytes of options (data offset 15)
    "max": [("Timestamp", (1, 2)), ("SAck", (10, 20, 30, 40, 50, 60)), ("NOP", None), ("NOP", None),
            ("NOP", None), ("NOP", None)],
}


@dataclass(frozen=True)
class Flow:
    v6: bool = False
    vlan: int | None = None
    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = "02:00:00:00:00:02"
    src: str = ""  # "" = 10.0.0.1 / 2001:db8::1
    dst: str = ""
    sport: int = 40000
    dport: int = 5201
    ack: int = 0x11223344
    window: int = 502
    ttl: int = 64
    tos: int = 0
    flow_label: int = 0
    df: bool = True
    ip_options: str = "none"
    tcp_options: str = "ts"
    urgent: int = 0

    def replace(self, **changes: Any) -> Flow:
        return dataclasses.replace(self, **changes)


def frame(flow: Flow, payload: bytes, *, seq: int, flags: int = ACK, ip_id: int = 0,
          ip_flags: int | None = None) -> bytes:
    """One frame of ``flow``; scapy fills in every length and checksum."""
    pkt: Packet = Ether(src=flow.src_mac, dst=flow.dst_mac)
    if flow.vlan is not None:
        pkt = pkt / Dot1Q(vlan=flow.vlan, prio=3)
    if flow.v6:
        pkt = pkt / IPv6(src=flow.src or "2001:db8::1", dst=flow.dst or "2001:db8::2",
                         hlim=flow.ttl, tc=flow.tos, fl=flow.flow_label)
    else:
        pkt = pkt / IP(src=flow.src or "10.0.0.1", dst=flow.dst or "10.0.0.2", ttl=flow.ttl,
                       tos=flow.tos, id=ip_id,
                       flags=("DF" if flow.df else 0) if ip_flags is None else ip_flags,
                       options=IP_OPTIONS[flow.ip_options])
    pkt = pkt / TCP(sport=flow.sport, dport=flow.dport, seq=seq & 0xFFFFFFFF, ack=flow.ack,
                    flags=flags, window=flow.window, urgptr=flow.urgent,
                    options=TCP_OPTIONS[flow.tcp_options])
    if payload:
        pkt = pkt / Raw(payload)
    return bytes(pkt)


def super_frame(flow: Flow, payload: bytes, *, seq: int, flags: int = ACK,
                ip_id: int = 0) -> bytes:
    """The super-frame with complete checksums (the caller makes its TCP one partial)."""
    return frame(flow, payload, seq=seq, flags=flags, ip_id=ip_id)


def expected_segments(flow: Flow, payload: bytes, mss: int, *, seq: int, flags: int = ACK,
                      ip_id: int = 0) -> list[bytes]:
    """What Linux GSO makes of the super-frame, each segment built by scapy on its own."""
    chunks = [payload[i : i + mss] for i in range(0, len(payload), mss)] or [b""]
    out = []
    for index, chunk in enumerate(chunks):
        seg_flags = flags & ~(FIN | PSH | CWR)
        if index == 0:
            seg_flags |= flags & CWR
        if index == len(chunks) - 1:
            seg_flags |= flags & (FIN | PSH)
        out.append(frame(flow, chunk, seq=seq + index * mss, flags=seg_flags,
                         ip_id=(ip_id + index) & 0xFFFF))
    return out


def tcp_payload(data: bytes) -> tuple[tuple[int, int], bytes]:
    """(sport, dport) and the TCP payload of a frame, read by scapy."""
    pkt = Ether(data)
    tcp = pkt[TCP]
    return (tcp.sport, tcp.dport), bytes(tcp.payload)


def scapy_valid_checksums(data: bytes) -> bool:
    """Whether scapy recomputes the same IPv4 header and TCP checksums the frame carries."""
    pkt = Ether(data)
    ours = [pkt[TCP].chksum]
    del pkt[TCP].chksum
    if IP in pkt:
        ours.append(pkt[IP].chksum)
        del pkt[IP].chksum
    again = Ether(bytes(pkt))
    theirs = [again[TCP].chksum] + ([again[IP].chksum] if IP in again else [])
    return ours == theirs


def partial_field(data: bytes) -> int:
    """The checksum-partial TCP field of a frame, from scapy's pseudo-header: the folded, not
    complemented, sum of the pseudo-header whose length is everything after the IP header."""
    pkt = Ether(data)
    if IPv6 in pkt:
        ip6 = pkt[IPv6]
        pseudo = (socket.inet_pton(socket.AF_INET6, ip6.src)
                  + socket.inet_pton(socket.AF_INET6, ip6.dst)
                  + len(bytes(ip6.payload)).to_bytes(4, "big") + b"\0\0\0\x06")
    else:
        ip4 = pkt[IP]
        pseudo = (socket.inet_aton(ip4.src) + socket.inet_aton(ip4.dst) + b"\0\x06"
                  + len(bytes(ip4.payload)).to_bytes(2, "big"))
    complemented: int = checksum(pseudo)
    return ~complemented & 0xFFFF


# Hypothesis strategies for flows: every shape the super-frame may take.
flows = st.builds(
    Flow,
    v6=st.booleans(),
    vlan=st.none() | st.integers(0, 4095),
    src=st.just(""),
    sport=st.integers(1, 0xFFFF),
    dport=st.integers(1, 0xFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    window=st.integers(0, 0xFFFF),
    ttl=st.integers(1, 255),
    tos=st.integers(0, 255),
    flow_label=st.integers(0, 0xFFFFF),
    df=st.booleans(),
    ip_options=st.sampled_from(sorted(IP_OPTIONS)),
    tcp_options=st.sampled_from(sorted(TCP_OPTIONS)),
)
