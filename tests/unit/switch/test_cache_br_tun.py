"""The flow cache on the agent's own br-tun answers as Neutron's pipeline does.

From the tunnel: to br-int on the network's local VLAN (and table 10 learns the sender);
to the tunnel: by the learned table-20 flow, with the network's VNI and no VLAN. The walk
and the cache must both give that, and the cache must answer the repeats itself.
bench/test_flow_cache.py times the same packets.
"""

from __future__ import annotations

import pytest

from support.flow_tables import (
    FROM_TUNNEL,
    LOCAL_VLAN,
    PATCH_INT,
    TO_TUNNEL,
    TUNNEL,
    VNI,
    agent_br_tun,
)
from tunnelnet.packet.fields import VLAN_CFI
from tunnelnet.switch.cache import FlowCache


@pytest.mark.parametrize("how", ["walk", "cache"])
def test_br_tun_forwards_by_the_learned_flow_both_ways(how: str) -> None:
    br = agent_br_tun()
    cache = FlowCache(br)
    process = br.process if how == "walk" else cache.process
    for _ in range(3):  # the first packet from the tunnel teaches table 20 the remote MAC
        inbound = process(dict(FROM_TUNNEL), 1500)
        outbound = process(dict(TO_TUNNEL), 1500)
    assert [(o.port, o.key["vlan_tci"]) for o in inbound] == [
        (PATCH_INT, LOCAL_VLAN | VLAN_CFI)
    ]
    assert [(o.port, o.key["vlan_tci"], o.key["tun_id"]) for o in outbound] == [
        (TUNNEL, 0, VNI)
    ]
    if how == "cache":
        assert cache.stats.hits > 0
