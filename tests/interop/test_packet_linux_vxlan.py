"""Linux's vxlan device as the judge of our VXLAN codec, both ways.

Namespace A holds a Linux vxlan device (VNI 1001, UDP 4789, remote = B's underlay address)
with 10.99.0.1/24; namespace B holds only plain sockets on the underlay: a UDP socket on 4789
(as our datapath has) and an AF_PACKET socket on its underlay veth. So:

(a) what Linux sends (a ping through the vxlan device) arrives in B, and our decap and
    flow-key extraction must find the VNI, Linux's MACs and the ICMP echo in it;
(b) what we build (an ARP request in a VXLAN payload on the UDP socket, an ICMP echo as a whole
    underlay frame with a UDP checksum on AF_PACKET) must make Linux answer.

GRE is not judged here: this kernel has no GRE module (see docs/architecture.md).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from support.netns import Lab, inside, lab, run
from tunnelnet.packet import (
    PacketError,
    decode,
    encode,
    extract_flow_key,
    vxlan_decap,
    vxlan_decap_payload,
    vxlan_encap,
    vxlan_payload,
)
from tunnelnet.packet.arp import Arp
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.icmp import Icmp
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.raw import Payload

pytestmark = [pytest.mark.netns, pytest.mark.interop]

VNI = 1001
UNDERLAY_A, UNDERLAY_B = "192.0.2.1", "192.0.2.2"
LINUX_VM_IP = "10.99.0.1"  # the vxlan device's address in namespace A
OUR_VM_IP, OUR_VM_MAC = "10.99.0.2", "fa:16:3e:00:99:02"  # the VM we play from namespace B
ETH_P_ALL = 0x0003
WAIT = 5.0  # seconds any one packet may take to show up


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


@dataclass
class Peer:
    ns_a: str
    ns_b: str
    vxlan_mac: str  # the Linux vxlan device's MAC, as `ip -j link` reports it
    veth_a_mac: str
    veth_b_mac: str
    udp: socket.socket  # in B, bound to UNDERLAY_B:4789
    raw: socket.socket  # in B, AF_PACKET on the underlay veth

    def receive_udp(self, want: Callable[[bytes], bool]) -> bytes:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.udp.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data, _ = self.udp.recvfrom(65535)
            except TimeoutError:
                break
            if want(data):
                return data
        raise AssertionError("no matching VXLAN packet from Linux arrived in time")

    def receive_frame(self, want: Callable[[bytes], bool]) -> bytes:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.raw.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.raw.recv(65535)
            except TimeoutError:
                break
            if want(data):
                return data
        raise AssertionError("no matching frame from Linux arrived in time")


def _link_mac(ns: str, ifname: str) -> str:
    info = json.loads(run(["ip", "-j", "-n", ns, "link", "show", ifname]).stdout)
    return str(info[0]["address"])


@pytest.fixture
def peer() -> Iterator[Peer]:
    with lab() as made:
        built = _build(made)
        try:
            yield built
        finally:
            built.udp.close()  # before lab() deletes the namespaces
            built.raw.close()


def _build(made: Lab) -> Peer:
    ns_a, ns_b = made.netns("linux-vtep"), made.netns("our-vtep")
    made.veth(ns_a, "ul0", ns_b, "ul0")
    made.addr(ns_a, "ul0", f"{UNDERLAY_A}/24")
    # Linux computes the UDP checksum itself then, rather than leaving a partial one for a
    # NIC that a veth does not have (AF_PACKET would see the partial sum)
    made.offloads_off(ns_a, "ul0")
    made.addr(ns_b, "ul0", f"{UNDERLAY_B}/24")
    run(["ip", "-n", ns_a, "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "dstport",
         "4789", "remote", UNDERLAY_B, "local", UNDERLAY_A, "dev", "ul0"])
    run(["ip", "-n", ns_a, "addr", "add", f"{LINUX_VM_IP}/24", "dev", "vx0"])
    run(["ip", "-n", ns_a, "link", "set", "vx0", "up"])

    def udp_socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((UNDERLAY_B, 4789))
        return sock

    def packet_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind(("ul0", 0))
        return sock

    udp = inside(ns_b, udp_socket)
    raw = inside(ns_b, packet_socket)
    # the sockets close before the namespaces go (lab() deletes them after the test)
    made_peer = Peer(ns_a, ns_b, _link_mac(ns_a, "vx0"), _link_mac(ns_a, "ul0"),
                     _link_mac(ns_b, "ul0"), udp, raw)
    return made_peer


def _ping_from_linux(peer: Peer) -> None:
    # a static neighbour, so Linux sends the echo itself rather than first an ARP request
    run(["ip", "-n", peer.ns_a, "neigh", "replace", OUR_VM_IP, "lladdr", OUR_VM_MAC, "dev",
         "vx0"])
    run(["ping", "-c", "1", "-W", "1", "-s", "40", OUR_VM_IP], netns=peer.ns_a, check=False,
        timeout=10)


def _is_echo_request(inner: bytes | memoryview) -> bool:
    key = extract_flow_key(inner, 1)
    return key.get("nw_proto") == 1 and key.get("tp_src") == 8


def test_linux_vxlan_payload_decaps_to_its_echo_request_with_our_flow_key(peer: Peer) -> None:
    threading.Thread(target=_ping_from_linux, args=(peer,), daemon=True).start()
    data = peer.receive_udp(lambda d: _is_echo_request(vxlan_decap_payload(d)[1]))
    vni, inner = vxlan_decap_payload(data)
    key = extract_flow_key(inner, 7, vni)
    assert key["tun_id"] == VNI == 1001
    assert (key["dl_src"], key["dl_dst"]) == (mac_int(peer.vxlan_mac), mac_int(OUR_VM_MAC))
    assert (key["dl_type"], key["nw_proto"]) == (0x0800, 1)
    assert (key["nw_src"], key["nw_dst"]) == (ip_int(LINUX_VM_IP), ip_int(OUR_VM_IP))
    assert (key["tp_src"], key["tp_dst"]) == (8, 0)  # echo request, code 0
    assert len(inner) == 14 + 20 + 8 + 40


def test_linux_whole_underlay_frame_decaps_with_valid_outer_headers(peer: Peer) -> None:
    def is_linux_vxlan_echo(frame: bytes) -> bool:
        try:
            return _is_echo_request(vxlan_decap(frame)[1])
        except PacketError:  # other traffic on the veth (IPv6 neighbour discovery, ...)
            return False

    threading.Thread(target=_ping_from_linux, args=(peer,), daemon=True).start()
    frame = peer.receive_frame(is_linux_vxlan_echo)
    vni, _inner = vxlan_decap(frame)  # checks the outer IPv4 checksum, UDP length, I flag
    # and the whole frame decodes, through the tunnel, as what Linux sent
    assert [layer.name for layer in decode(frame)] == [
        "ethernet", "ipv4", "udp", "vxlan", "ethernet", "ipv4", "icmp", "payload"]
    outer = extract_flow_key(frame, 1, verify_checksums=True)
    assert vni == VNI
    assert (outer["dl_src"], outer["dl_dst"]) == (mac_int(peer.veth_a_mac),
                                                  mac_int(peer.veth_b_mac))
    assert (outer["nw_src"], outer["nw_dst"]) == (ip_int(UNDERLAY_A), ip_int(UNDERLAY_B))
    assert (outer["nw_proto"], outer["tp_dst"]) == (17, 4789)


def test_linux_answers_our_arp_request_sent_as_a_vxlan_payload(peer: Peer) -> None:
    request: list[Layer] = [
        Ethernet("ff:ff:ff:ff:ff:ff", OUR_VM_MAC, 0x0806),
        Arp(1, OUR_VM_MAC, OUR_VM_IP, "00:00:00:00:00:00", LINUX_VM_IP),
    ]
    peer.udp.sendto(vxlan_payload(encode(request), VNI), (UNDERLAY_A, 4789))

    def is_reply(data: bytes) -> bool:
        key = extract_flow_key(vxlan_decap_payload(data)[1], 1)
        return key.get("arp_op") == 2

    vni, inner = vxlan_decap_payload(peer.receive_udp(is_reply))
    key = extract_flow_key(inner, 1, vni)
    assert vni == VNI
    assert key["dl_dst"] == mac_int(OUR_VM_MAC)
    assert (key["arp_sha"], key["arp_spa"]) == (mac_int(peer.vxlan_mac), ip_int(LINUX_VM_IP))
    assert (key["arp_tha"], key["arp_tpa"]) == (mac_int(OUR_VM_MAC), ip_int(OUR_VM_IP))


def test_linux_answers_our_whole_vxlan_frame_with_udp_checksum(peer: Peer) -> None:
    run(["ip", "-n", peer.ns_a, "neigh", "replace", OUR_VM_IP, "lladdr", OUR_VM_MAC, "dev",
         "vx0"])
    echo: list[Layer] = [
        Ethernet(peer.vxlan_mac, OUR_VM_MAC, 0x0800),
        IPv4(OUR_VM_IP, LINUX_VM_IP, 1, ident=77),
        Icmp.echo(8, 0x7777, 5),
        Payload(b"tunnelnet was here"),
    ]
    frame = vxlan_encap(encode(echo), VNI, UNDERLAY_B, UNDERLAY_A, peer.veth_b_mac,
                        peer.veth_a_mac, udp_checksum=True)
    peer.raw.send(frame)

    def is_reply(data: bytes) -> bool:
        key = extract_flow_key(vxlan_decap_payload(data)[1], 1)
        return key.get("nw_proto") == 1 and key.get("tp_src") == 0

    vni, inner = vxlan_decap_payload(peer.receive_udp(is_reply))
    key = extract_flow_key(inner, 1, vni)
    assert vni == VNI
    assert (key["nw_src"], key["nw_dst"]) == (ip_int(LINUX_VM_IP), ip_int(OUR_VM_IP))
    # the reply carries our identifier, sequence number and data back
    assert bytes(inner[34 + 4 : 34 + 8]) == (0x7777).to_bytes(2, "big") + (5).to_bytes(2, "big")
    assert bytes(inner[34 + 8 :]) == b"tunnelnet was here"


def test_linux_drops_our_frame_when_the_i_flag_is_clear(peer: Peer) -> None:
    """The negative control: the same ARP request without the I flag gets no answer, so the
    answers above are Linux accepting our header, not Linux accepting anything."""
    request: list[Layer] = [
        Ethernet("ff:ff:ff:ff:ff:ff", OUR_VM_MAC, 0x0806),
        Arp(1, OUR_VM_MAC, OUR_VM_IP, "00:00:00:00:00:00", LINUX_VM_IP),
    ]
    payload = bytearray(vxlan_payload(encode(request), VNI))
    payload[0] = 0x00
    peer.udp.sendto(bytes(payload), (UNDERLAY_A, 4789))
    replies = []
    deadline = time.monotonic() + 1.5
    while (left := deadline - time.monotonic()) > 0:
        peer.udp.settimeout(left)
        try:
            data, _ = peer.udp.recvfrom(65535)
        except TimeoutError:
            break
        # Linux's own IPv6 chatter (router solicitations, MLD) may pass by; only ARP counts
        if extract_flow_key(vxlan_decap_payload(data)[1], 1).get("arp_op") == 2:
            replies.append(data)
    assert replies == []
