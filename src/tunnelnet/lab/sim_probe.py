"""Pings in the simulation: the frames a VM's stack would send, followed by the fabric.

A ping from A to B is, on the wire: an ARP request for B's address (broadcast), the answer
(from whoever owns that address in A's network, or from br-tun's ARP responder), an ICMP echo
request to the MAC that answered, and B's echo reply. The frames are built as bytes with
:mod:`tunnelnet.packet` and their flow keys extracted exactly as the datapath does. As in
the real lab, a pair counts as reached only if B itself answered: another tenant's VM with an
equal address never counts. For a pair that must stay apart, the echo request is also sent
to B's real MAC (as an attacker who knows it would), and where each copy ended is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelnet.lab.sim_fabric import SimFabric, Walk
from tunnelnet.packet import arp, ethernet, icmp, ipv4, vlan
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_VLAN,
    IPPROTO_ICMP,
    FlowKey,
    int_to_mac,
)
from tunnelnet.packet.flowkey import extract_flow_key

BROADCAST = "ff:ff:ff:ff:ff:ff"
ARP_REQUEST, ARP_REPLY = 1, 2
ECHO_REQUEST, ECHO_REPLY = 8, 0


@dataclass(frozen=True, slots=True)
class SimVm:
    name: str
    tenant: str
    network: str
    hypervisor: str
    port_id: str
    mac: str
    ip: str
    mtu: int
    vnic: str  # its port on br-int


def _key(frame: bytes) -> FlowKey:
    return extract_flow_key(frame, 0)


def arp_frame(src_mac: str, dst_mac: str, op: int, sha: str, spa: str, tha: str, tpa: str,
              *, vid: int | None = None) -> bytes:
    body = arp.build(arp.Arp(op, sha, spa, tha, tpa))
    return _ethernet(dst_mac, src_mac, ETH_TYPE_ARP, body, vid)


def icmp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, icmp_type: int, *,
               vid: int | None = None) -> bytes:
    body = ipv4.build(ipv4.IPv4(src_ip, dst_ip, IPPROTO_ICMP),
                      icmp.build(icmp.Icmp.echo(icmp_type, 0x7e57, 1), b"tunnelnet-sim"))
    return _ethernet(dst_mac, src_mac, ETH_TYPE_IPV4, body, vid)


def _ethernet(dst: str, src: str, type_: int, body: bytes, vid: int | None) -> bytes:
    if vid is None:
        return ethernet.build(ethernet.Ethernet(dst, src, type_), body)
    # a frame a VM tags itself (an attacker guessing another network's local VLAN)
    return ethernet.build(ethernet.Ethernet(dst, src, ETH_TYPE_VLAN),
                          vlan.build(vlan.Vlan(vid, type_), body))


def send(fabric: SimFabric, vm: SimVm, frame: bytes, *, keep_path: bool = False) -> Walk:
    return fabric.send(vm.hypervisor, vm.vnic, _key(frame), keep_path=keep_path)


@dataclass(frozen=True, slots=True)
class PingResult:
    src: str
    dst: str
    expected: bool
    reached: bool
    answered_by: str | None  # the MAC that answered the ARP for dst's address
    detail: str
    # the echo request sent to dst's own MAC reached dst's vNIC: for a pair that must stay
    # apart that is a breach even when ARP (rightly) found nobody
    crossed: bool = False

    @property
    def surprise(self) -> bool:
        return self.expected != self.reached or (not self.expected and self.crossed)


def _arp_answer(fabric: SimFabric, src: SimVm, walk: Walk, ip: str,
                vms_by_name: dict[str, SimVm]) -> tuple[str | None, str]:
    """Who answered the ARP request of ``walk``, and how the answer got back."""
    for ending in walk.endings:
        # br-tun's ARP responder turns the request around towards the sender
        if ending.accepted and ending.vm == src.name and ending.key.get("arp_op") == ARP_REPLY:
            return int_to_mac(ending.key["arp_sha"]), "answered by br-tun's ARP responder"
    for ending in walk.endings:
        owner = vms_by_name.get(ending.vm)
        if not ending.accepted or owner is None or owner.ip != ip or owner is src:
            continue
        reply = send(fabric, owner, arp_frame(owner.mac, src.mac, ARP_REPLY, owner.mac,
                                              owner.ip, src.mac, src.ip))
        if reply.delivered_to(src.name):
            return owner.mac, f"answered by {owner.name}"
    return None, "no answer: " + walk.summary()


def ping(fabric: SimFabric, src: SimVm, dst: SimVm, vms_by_name: dict[str, SimVm]
         ) -> PingResult:
    expected = src.network == dst.network
    request = send(fabric, src, arp_frame(src.mac, BROADCAST, ARP_REQUEST, src.mac, src.ip,
                                          "00:00:00:00:00:00", dst.ip))
    answered_by, how = _arp_answer(fabric, src, request, dst.ip, vms_by_name)
    # the echo goes to B's own MAC whatever ARP said: for a pair that must stay apart this is
    # the attacker's best try, and its endings say where the network stopped it
    echo = send(fabric, src, icmp_frame(src.mac, dst.mac, src.ip, dst.ip, ECHO_REQUEST))
    if not echo.delivered_to(dst.name):
        return PingResult(src.name, dst.name, expected, False, answered_by,
                          f"ARP {how}; echo request to {dst.mac}: {echo.summary()}")
    if answered_by != dst.mac:
        return PingResult(src.name, dst.name, expected, False, answered_by,
                          f"ARP for {dst.ip} {how}, not by {dst.name}; but the echo request "
                          f"to {dst.mac} got through", crossed=True)
    reply = send(fabric, dst, icmp_frame(dst.mac, src.mac, dst.ip, src.ip, ECHO_REPLY))
    if not reply.delivered_to(src.name):
        return PingResult(src.name, dst.name, expected, False, answered_by,
                          f"echo reply to {src.mac}: {reply.summary()}", crossed=True)
    return PingResult(src.name, dst.name, expected, True, answered_by,
                      f"ARP {how}; echo request and reply delivered", crossed=True)
