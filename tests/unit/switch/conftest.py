"""Helpers for replaying packets through real tables (Faucet style)."""

from __future__ import annotations

import pytest

from tunnelnet.packet.fields import ETH_TYPE_ARP, ETH_TYPE_IPV4, VLAN_CFI, mac_to_int


class Clock:
    """An injectable clock so timeouts and MAC aging are tested without sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def eth(
    in_port: int,
    src: str,
    dst: str,
    *,
    vlan: int | None = None,
    tun_id: int | None = None,
    dl_type: int = ETH_TYPE_IPV4,
) -> dict[str, int]:
    """A flow key as tunnelnet.packet extracts it (fields.py conventions)."""
    key = {
        "in_port": in_port,
        "dl_src": mac_to_int(src),
        "dl_dst": mac_to_int(dst),
        "dl_type": dl_type,
        "vlan_tci": (VLAN_CFI | vlan) if vlan is not None else 0,
    }
    if dl_type == ETH_TYPE_IPV4:
        key.update(nw_src=0x0A000001, nw_dst=0x0A000002, nw_proto=17, nw_tos=0, nw_ecn=0,
                   nw_ttl=64, tp_src=1000, tp_dst=2000)  # fmt: skip
    if dl_type == ETH_TYPE_ARP:
        key.update(arp_op=1, arp_spa=0x0A000001, arp_tpa=0x0A000002,
                   arp_sha=mac_to_int(src), arp_tha=0)  # fmt: skip
    if tun_id is not None:
        key["tun_id"] = tun_id
    return key
