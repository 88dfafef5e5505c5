"""Neutron's learned-unicast table at a thousand flows: each packet finds its own flow.

The same tables are timed at up to 100k flows by bench/test_classifier.py; here the answers.
"""

from __future__ import annotations

from support.flow_tables import (
    KNOWN_UNICAST_VNI,
    MAC_BASE,
    VLANS,
    br_tun_known_unicast,
    learned_unicast,
)
from tunnelnet.packet.fields import VLAN_CFI

N = 1_000


def test_each_learned_mac_finds_its_own_flow_and_strangers_the_default() -> None:
    cls, keys = learned_unicast(N)
    found = [cls.lookup(key) for key in keys]
    assert [(f.seq, f.priority) if f else None for f in found] == [(i, 1) for i in range(N)]
    default = (N, 0)
    stranger = {"vlan_tci": VLAN_CFI | 1, "dl_dst": MAC_BASE + N, "in_port": 1}
    # MAC 0 was learned on VLAN 1: on VLAN 2 it is another network's unknown MAC
    other_vlan = {**keys[0], "vlan_tci": VLAN_CFI | 2}
    for key in (stranger, other_vlan):
        hit = cls.lookup(key)
        assert hit is not None and (hit.seq, hit.priority) == default


def test_br_tun_sends_known_unicast_to_the_tunnel_untagged_with_the_vni() -> None:
    br, keys = br_tun_known_unicast(N)
    assert len(keys) == N
    for key in keys[:: N // 10]:
        out = br.process(key, 100)
        assert [(o.port, o.key["tun_id"], o.key["vlan_tci"]) for o in out] == [
            (2, KNOWN_UNICAST_VNI, 0)
        ]
    unknown = {**keys[0], "dl_dst": MAC_BASE + N, "vlan_tci": VLAN_CFI | (1 + N % VLANS)}
    assert br.process(unknown, 100) == []  # table 20's default: drop
