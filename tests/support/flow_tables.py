"""Flow tables of Neutron's shape at a chosen size, for the switch's tests and benchmarks.

The unit tests (tests/unit/switch) check the answers at a small size; the benchmarks
(bench/test_classifier.py, bench/test_flow_cache.py) time the very same tables at large ones.
"""

from __future__ import annotations

from tunnelnet.agent import br_tun
from tunnelnet.packet.fields import ETH_TYPE_IPV4, IPPROTO_TCP, VLAN_CFI
from tunnelnet.switch import Bridge
from tunnelnet.switch.classifier import Classifier
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import Match

MAC_BASE = 0xFA163E000000  # Neutron's OUI, fa:16:3e
VLANS = 50  # local VLANs the learned MACs spread over


def learned_unicast(n: int) -> tuple[Classifier, list[dict[str, int]]]:
    """Neutron's table 20 with `n` learned (VLAN, MAC) flows, flow i with seq i, over a
    priority-0 default (seq n); and the key each learned flow is for, in the same order."""
    cls = Classifier()
    keys = []
    for i in range(n):
        vlan, mac = 1 + i % VLANS, MAC_BASE + i
        m = Match.of({"vlan_tci": (vlan, 0x0FFF), "dl_dst": (mac, (1 << 48) - 1)})
        cls.insert(FlowEntry(table=20, priority=1, match=m, actions=(), seq=i))
        keys.append({"vlan_tci": VLAN_CFI | vlan, "dl_dst": mac, "in_port": 1})
    cls.insert(FlowEntry(table=20, priority=0, match=Match.of({}), actions=(), seq=n))
    return cls, keys


# br-tun of the classifier benchmark: patch-int is 1, the tunnel 2, every MAC on VNI 0x64
KNOWN_UNICAST_VNI = 0x64


def br_tun_known_unicast(n: int) -> tuple[Bridge, list[dict[str, int]]]:
    """br-tun with `n` learned unicast flows in table 20 (each sends to the tunnel, port 2,
    with VNI 0x64 and no VLAN); and at most 1000 keys of packets from br-int to them."""
    br = Bridge("br-tun", fail_mode="secure")
    br.add_port("patch-int", 1)
    br.add_port("vxlan", 2)
    br.add_flows(
        [
            "priority=1,in_port=1 actions=resubmit(,2)",
            "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
            "table=20,priority=0 actions=drop",
        ]
    )
    for i in range(n):
        br.add_flow(
            f"table=20,priority=1,vlan_tci=0x{1 + i % VLANS:04x}/0x0fff,"
            f"dl_dst=fa:16:3e:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x} "
            f"actions=load:0->NXM_OF_VLAN_TCI[],load:{KNOWN_UNICAST_VNI:#x}->NXM_NX_TUN_ID[],"
            "output:2"
        )
    keys = [
        {"in_port": 1, "vlan_tci": VLAN_CFI | (1 + i % VLANS), "dl_dst": MAC_BASE + i,
         "dl_src": 0xFA163E990000, "dl_type": 0x0800}
        for i in range(0, n, max(1, n // 1000))
    ]  # fmt: skip
    return br, keys


# the agent's own br-tun (tunnelnet.agent.br_tun) with one VXLAN peer and one network
PATCH_INT, TUNNEL, VNI, LOCAL_VLAN = 1, 2, 0x3E9, 1
LOCAL_MAC, REMOTE_MAC = 0x020000000001, 0x020000000002


def agent_br_tun() -> Bridge:
    """br-tun as the agent programs it: defaults, the tunnel port, the network's VLAN<->VNI
    mapping and its flood flow."""
    br = Bridge("br-tun", fail_mode="secure")
    br.add_port("patch-int", PATCH_INT)
    br.add_port("vxlan-peer", TUNNEL)
    flood = br_tun.flood_to_tunnels(LOCAL_VLAN, VNI, [TUNNEL])
    assert flood is not None
    flows = [*br_tun.default_flows(PATCH_INT, cookie=1, arp_responder=False),
             br_tun.tunnel_port("vxlan", TUNNEL), br_tun.local_vlan("vxlan", LOCAL_VLAN, VNI),
             flood]  # fmt: skip
    br.add_flows(f.add_text(1) for f in flows)
    return br


def _tcp(in_port: int, src: int, dst: int, **extra: int) -> dict[str, int]:
    return {"in_port": in_port, "dl_src": src, "dl_dst": dst, "vlan_tci": 0,
            "dl_type": ETH_TYPE_IPV4, "nw_src": 0x0A000001, "nw_dst": 0x0A000002,
            "nw_proto": IPPROTO_TCP, "nw_tos": 0, "nw_ecn": 0, "nw_ttl": 64, "tp_src": 5201,
            "tp_dst": 40000, "tcp_flags": 0x10, **extra}  # fmt: skip


# a TCP segment from the remote VM arriving by the tunnel, and the local VM's answer
FROM_TUNNEL = _tcp(TUNNEL, REMOTE_MAC, LOCAL_MAC, tun_id=VNI)
TO_TUNNEL = _tcp(PATCH_INT, LOCAL_MAC, REMOTE_MAC, vlan_tci=LOCAL_VLAN | VLAN_CFI)
