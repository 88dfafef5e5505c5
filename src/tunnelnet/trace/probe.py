"""The packet VM1 would send to VM2, built as bytes from the controller's view of their ports.

The same bytes are traced (through their flow key, extracted by the datapath's own extractor)
and, with ``--live``, sent from VM1, so the prediction and the wire talk about one packet. A
marker in the payload lets a capture tell our packet from any other traffic.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, replace
from typing import Final

from tunnelnet.packet import arp, ethernet, icmp, ipv4, tcp, udp
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.switch.flow_format import format_key
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.view import VmInfo

PROTOCOLS: Final = ("icmp", "tcp", "udp", "arp")
BROADCAST: Final = "ff:ff:ff:ff:ff:ff"
MARK_PREFIX: Final = b"tunnelnet-trace:"
_ICMP_PAYLOAD: Final = 56  # what ping sends by default
_ECHO_ID: Final = 0x7E57
_SPORT: Final = 40001


@dataclass(frozen=True, slots=True)
class Probe:
    proto: str
    frame: bytes  # the Ethernet frame as VM1's NIC sends it
    marker: bytes  # in the payload (empty for ARP, which has no room for one)
    flow: str  # its flow key in ofproto/trace syntax, without in_port
    summary: str

    def to_json(self) -> dict[str, object]:
        return {"proto": self.proto, "length": len(self.frame), "flow": self.flow,
                "marker": self.marker.decode(), "summary": self.summary,
                "frame": self.frame.hex()}


_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def forged(src: VmInfo, mac: str | None = None, ip: str | None = None) -> VmInfo:
    """SRC as it claims to be in a forged frame: another source MAC and/or IPv4 address (what
    port security must stop). The vNIC it is sent from stays SRC's."""
    if mac is not None and not _MAC_RE.fullmatch(mac.lower()):
        raise TraceError(f"--src-mac {mac!r} is not a MAC address like fa:16:3e:00:00:01")
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise TraceError(f"--src-ip {ip!r} is not an IPv4 address") from None
    return replace(src, mac=(mac or src.mac).lower(), ip=ip or src.ip)


def new_marker() -> bytes:
    return MARK_PREFIX + secrets.token_hex(6).encode()


MAX_PAYLOAD: Final = 9000


def build(src: VmInfo, dst: VmInfo, proto: str = "icmp", dport: int | None = None,
          marker: bytes | None = None, size: int | None = None) -> Probe:
    """``size``: payload bytes after the ICMP/UDP/TCP header (ping's 56 for ICMP, the marker
    alone otherwise), to see where a big frame stops (the underlay MTU)."""
    if proto not in PROTOCOLS:
        raise TraceError(f"--proto {proto!r}: must be one of {', '.join(PROTOCOLS)}")
    if dport is not None and proto not in ("tcp", "udp"):
        raise TraceError(f"--dport {dport} needs --proto tcp or udp, not {proto}")
    if dport is not None and not 1 <= dport <= 65535:
        raise TraceError(f"--dport {dport} is outside 1..65535")
    mark = new_marker() if marker is None else marker
    if size is not None and proto == "arp":
        raise TraceError("--size needs --proto icmp, tcp or udp (an ARP packet has no payload)")
    if size is not None and not len(mark) <= size <= MAX_PAYLOAD:
        raise TraceError(f"--size {size} is outside {len(mark)}..{MAX_PAYLOAD} (the marker "
                         "alone takes the first bytes)")
    body_len = size if size is not None else (_ICMP_PAYLOAD if proto == "icmp" else len(mark))
    payload = mark.ljust(body_len, b".")
    if proto == "arp":
        # who-has VM2's address, from VM1, to everyone: what VM1 sends before its first packet
        body = arp.build(arp.Arp(arp.OP_REQUEST, src.mac, src.ip, "00:00:00:00:00:00", dst.ip))
        frame = ethernet.build(ethernet.Ethernet(BROADCAST, src.mac, ETH_TYPE_ARP), body)
        summary = f"ARP request who-has {dst.ip} tell {src.ip}"
        mark = b""
    else:
        if proto == "icmp":
            l4 = icmp.build(icmp.Icmp.echo(icmp.ECHO_REQUEST, _ECHO_ID, 1), payload)
            number = IPPROTO_ICMP
            summary = f"ICMP echo request {src.ip} -> {dst.ip}"
        elif proto == "udp":
            port = dport or 5201
            l4 = udp.build(udp.Udp(_SPORT, port), payload, src.ip, dst.ip)
            number = IPPROTO_UDP
            summary = f"UDP {src.ip}:{_SPORT} -> {dst.ip}:{port}"
        else:
            port = dport or 5201
            # a SYN may carry data (RFC 9293 3.10.7.3); the marker rides in it
            l4 = tcp.build(tcp.Tcp(_SPORT, port, seq=1, flags=tcp.SYN), payload, src.ip,
                           dst.ip)
            number = IPPROTO_TCP
            summary = f"TCP SYN {src.ip}:{_SPORT} -> {dst.ip}:{port}"
        packet = ipv4.build(ipv4.IPv4(src.ip, dst.ip, number, ttl=64, flags=ipv4.FLAG_DF), l4)
        # the destination MAC is VM2's own, as if VM1 had resolved it already
        frame = ethernet.build(ethernet.Ethernet(dst.mac, src.mac, ETH_TYPE_IPV4), packet)
    key = extract_flow_key(frame, 0)
    key.pop("in_port", None)
    return Probe(proto, frame, mark, format_key(key), summary)


def _probe(proto: str, frame: bytes, summary: str) -> Probe:
    key = extract_flow_key(frame, 0)
    key.pop("in_port", None)
    return Probe(proto, frame, b"", format_key(key), summary)


def arp_request(src: VmInfo, dst: VmInfo) -> Probe:
    """What SRC broadcasts before its first packet to DST: who-has DST's address."""
    return build(src, dst, "arp")


def arp_reply(owner: VmInfo, asker: VmInfo) -> Probe:
    """OWNER's answer to ASKER's request, unicast to the asker (RFC 826)."""
    body = arp.build(arp.Arp(arp.OP_REPLY, owner.mac, owner.ip, asker.mac, asker.ip))
    frame = ethernet.build(ethernet.Ethernet(asker.mac, owner.mac, ETH_TYPE_ARP), body)
    return _probe("arp", frame, f"ARP reply {owner.ip} is-at {owner.mac}")


def echo_reply(src: VmInfo, dst: VmInfo) -> Probe:
    """DST's echo reply to SRC's ping (RFC 792), to SRC's MAC."""
    l4 = icmp.build(icmp.Icmp.echo(icmp.ECHO_REPLY, _ECHO_ID, 1), b"".ljust(_ICMP_PAYLOAD, b"."))
    packet = ipv4.build(ipv4.IPv4(dst.ip, src.ip, IPPROTO_ICMP, ttl=64), l4)
    frame = ethernet.build(ethernet.Ethernet(src.mac, dst.mac, ETH_TYPE_IPV4), packet)
    return _probe("icmp", frame, f"ICMP echo reply {dst.ip} -> {src.ip}")
