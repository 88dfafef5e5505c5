"""Pings in the simulation: the trace's walk of the whole exchange, read as a ping's verdict.

A ping from A to B is, on the wire: an ARP request for B's address (broadcast), the answer
(from whoever owns that address in A's network, or from br-tun's ARP responder), an ICMP echo
request to B's MAC, and B's echo reply. The trace's walker (:mod:`tunnelnet.trace.journey`)
walks exactly these frames through the switches' own tables, learning along them as the
switches would, so ``lab ping``, ``lab verify`` and ``tunnelnet trace`` give one answer. As in
the real lab, a pair counts as reached only if B itself answered: another tenant's VM with an
equal address never counts. The echo request goes to B's real MAC whatever ARP said (as an
attacker who knows it would), and where its copies ended is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnelnet.trace.journey import Walker


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


def ping(walker: Walker, src_name: str, dst_name: str) -> PingResult:
    """The verdict of ``tunnelnet trace SRC DST``'s walk, as a ping's."""
    journey = walker.journey(src_name, dst_name, verdict=True)
    src, dst = walker.vm(src_name), walker.vm(dst_name)
    expected = src.network == dst.network
    outcome = journey.outcome
    answered_by = outcome.arp_answer
    owner = next((v.name for v in walker.vms.values() if v.mac == answered_by
                  and v.network == src.network), None)
    responder = any(e["what"] == "answered" for e in journey.exchange[0]["ends"])
    who = ("br-tun's ARP responder" if responder else owner or answered_by) \
        if answered_by else None
    arp_words = f"answered by {who}" if who else "no answer"
    if outcome.answered:
        return PingResult(src.name, dst.name, expected, True, answered_by,
                          f"ARP {arp_words}; echo request and reply delivered", crossed=True)
    if not outcome.delivered:
        return PingResult(src.name, dst.name, expected, False, answered_by,
                          f"ARP {arp_words}; echo request to {dst.mac}: {outcome.summary}")
    if answered_by != dst.mac:
        return PingResult(src.name, dst.name, expected, False, answered_by,
                          f"ARP for {dst.ip} {arp_words}, not by {dst.name}; but the echo "
                          f"request to {dst.mac} got through", crossed=True)
    back = journey.exchange[-1]
    return PingResult(src.name, dst.name, expected, False, answered_by,
                      f"echo reply to {src.mac}: not delivered ("
                      + "; ".join(f"{e['what']} at {e['host']} {e['bridge']}: {e['reason']}"
                                  for e in back["ends"]) + ")", crossed=True)
