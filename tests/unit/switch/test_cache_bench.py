"""What the flow cache saves per packet on the agent's real br-tun pipeline (pytest-benchmark:
disabled in normal runs, measured by `make bench`). Each benchmark also checks the answer, so
a fast wrong cache cannot pass as an improvement."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tunnelnet.agent import br_tun
from tunnelnet.packet.fields import ETH_TYPE_IPV4, IPPROTO_TCP, VLAN_CFI
from tunnelnet.switch import Bridge, Output
from tunnelnet.switch.cache import FlowCache

PATCH_INT, TUNNEL, VNI, LOCAL_VLAN = 1, 2, 0x3E9, 1
LOCAL_MAC, REMOTE_MAC = 0x020000000001, 0x020000000002


def _br_tun() -> Bridge:
    br = Bridge("br-tun", fail_mode="secure")
    br.add_port("patch-int", PATCH_INT)
    br.add_port("vxlan-peer", TUNNEL)
    flood = br_tun.flood_to_tunnels(LOCAL_VLAN, VNI, [TUNNEL])
    assert flood is not None
    flows = [*br_tun.default_flows(PATCH_INT, cookie=1, arp_responder=False),
             br_tun.tunnel_port("vxlan", TUNNEL), br_tun.local_vlan("vxlan", LOCAL_VLAN, VNI),
             flood]
    br.add_flows(f.add_text(1) for f in flows)
    return br


def _tcp(in_port: int, src: int, dst: int, **extra: int) -> dict[str, int]:
    return {"in_port": in_port, "dl_src": src, "dl_dst": dst, "vlan_tci": 0,
            "dl_type": ETH_TYPE_IPV4, "nw_src": 0x0A000001, "nw_dst": 0x0A000002,
            "nw_proto": IPPROTO_TCP, "nw_tos": 0, "nw_ecn": 0, "nw_ttl": 64, "tp_src": 5201,
            "tp_dst": 40000, "tcp_flags": 0x10, **extra}


FROM_TUNNEL = _tcp(TUNNEL, REMOTE_MAC, LOCAL_MAC, tun_id=VNI)
TO_TUNNEL = _tcp(PATCH_INT, LOCAL_MAC, REMOTE_MAC, vlan_tci=LOCAL_VLAN | VLAN_CFI)


@pytest.mark.parametrize("packet", ["from_tunnel_learns", "to_tunnel_learned"])
@pytest.mark.parametrize("how", ["walk", "cache"])
def test_br_tun_per_packet_cost(benchmark: Callable[..., list[Output]], packet: str,
                                how: str) -> None:
    br = _br_tun()
    cache = FlowCache(br)
    process = br.process if how == "walk" else cache.process
    for _ in range(3):  # learn the remote MAC; the cache then holds both flows
        process(dict(FROM_TUNNEL), 1500)
        process(dict(TO_TUNNEL), 1500)
    key = FROM_TUNNEL if packet == "from_tunnel_learns" else TO_TUNNEL
    outputs = benchmark(process, key, 1500)
    # Neutron's pipeline: from the tunnel to br-int on the local VLAN; to the tunnel by the
    # learned table-20 flow with the network's VNI and no VLAN
    want = (PATCH_INT, LOCAL_VLAN | VLAN_CFI) if key is FROM_TUNNEL else (TUNNEL, 0)
    assert [(o.port, o.key["vlan_tci"]) for o in outputs] == [want]
    if how == "cache":
        assert cache.stats.hits > 0
