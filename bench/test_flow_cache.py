"""What the flow cache saves per packet on the agent's real br-tun pipeline (run: make bench).
Each benchmark also checks the answer, so a fast wrong cache cannot pass as an improvement;
tests/unit/switch/test_cache_br_tun.py tests the same answers without timing them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from support.flow_tables import (
    FROM_TUNNEL,
    LOCAL_VLAN,
    PATCH_INT,
    TO_TUNNEL,
    TUNNEL,
    agent_br_tun,
)
from tunnelnet.packet.fields import VLAN_CFI
from tunnelnet.switch import Output
from tunnelnet.switch.cache import FlowCache

pytestmark = pytest.mark.benchmark(group="flow-cache")


@pytest.mark.parametrize("packet", ["from_tunnel_learns", "to_tunnel_learned"])
@pytest.mark.parametrize("how", ["walk", "cache"])
def test_br_tun_per_packet_cost(benchmark: Callable[..., list[Output]], packet: str,
                                how: str) -> None:
    br = agent_br_tun()
    cache = FlowCache(br)
    process = br.process if how == "walk" else cache.process
    for _ in range(3):  # learn the remote MAC; the cache then holds both flows
        process(dict(FROM_TUNNEL), 1500)
        process(dict(TO_TUNNEL), 1500)
    key = FROM_TUNNEL if packet == "from_tunnel_learns" else TO_TUNNEL
    outputs = benchmark(process, key, 1500)
    want = (PATCH_INT, LOCAL_VLAN | VLAN_CFI) if key is FROM_TUNNEL else (TUNNEL, 0)
    assert [(o.port, o.key["vlan_tci"]) for o in outputs] == [want]
    if how == "cache":
        assert cache.stats.hits > 0
