# ruff: noqa: E501  (flow lines are kept whole, exactly as ovs-ofctl printed them)
"""Neutron's br-tun pipeline with its exact learn() of table 10, replayed packet by packet.

The flows are Neutron's (ovs_neutron_agent / br_tun.py) for one VXLAN network, VNI 0x64 on
local VLAN 1, with tunnel ports 2 and 3 and the patch to br-int on port 1.
"""

from __future__ import annotations

from tunnelnet.packet.fields import VLAN_CFI
from tunnelnet.switch import Bridge

from .conftest import Clock, eth

BR_TUN_FLOWS = """
# table 0: classify by in_port
table=0,priority=1,in_port=1 actions=resubmit(,2)
table=0,priority=1,in_port=2 actions=resubmit(,4)
table=0,priority=1,in_port=3 actions=resubmit(,4)
table=0,priority=0 actions=drop
table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)
table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)
table=3,priority=0 actions=drop
table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)
table=4,priority=0 actions=drop
table=10,priority=1 actions=learn(cookie=0xabc,table=20,priority=1,hard_timeout=300,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
table=20,priority=0 actions=resubmit(,22)
table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3
table=22,priority=0 actions=drop
"""

VM = "fa:16:3e:00:00:01"  # local VM behind br-int
REMOTE = "fa:16:3e:00:00:99"  # VM on the hypervisor behind tunnel port 3


def _br_tun(clock: Clock, **kwargs: int) -> Bridge:
    br = Bridge("br-tun", fail_mode="secure", clock=clock, **kwargs)
    br.add_port("patch-int", 1)
    br.add_port("vxlan-a", 2)
    br.add_port("vxlan-b", 3)
    br.add_flows(BR_TUN_FLOWS.splitlines())
    return br


def test_unknown_unicast_from_br_int_floods_to_all_tunnels_of_the_network(clock: Clock) -> None:
    br = _br_tun(clock)
    out = br.process(eth(1, VM, REMOTE, vlan=1), 60)
    assert [o.port for o in out] == [2, 3]
    assert all(o.key["tun_id"] == 0x64 and o.key["vlan_tci"] == 0 for o in out)


def test_frame_from_tunnel_is_tagged_with_local_vlan_and_sent_to_br_int(clock: Clock) -> None:
    br = _br_tun(clock)
    out = br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    assert [o.port for o in out] == [1]
    assert out[0].key["vlan_tci"] == VLAN_CFI | 1


def test_learned_remote_mac_is_sent_only_to_its_tunnel(clock: Clock) -> None:
    br = _br_tun(clock)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    # Neutron's learned flow, as ovs-ofctl prints it
    assert (
        "cookie=0xabc, table=20, hard_timeout=300, priority=1,vlan_tci=0x0001/0x0fff,"
        "dl_dst=fa:16:3e:00:00:99 actions=load:0->NXM_OF_VLAN_TCI[],"
        "load:0x64->NXM_NX_TUN_ID[],output:3"
    ) in br.dump_flows("table=20", stats=False)
    out = br.process(eth(1, VM, REMOTE, vlan=1), 60)
    assert [o.port for o in out] == [3]
    assert out[0].key["tun_id"] == 0x64 and out[0].key["vlan_tci"] == 0


def test_learned_mac_moves_when_it_appears_behind_another_tunnel(clock: Clock) -> None:
    br = _br_tun(clock)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    br.process(eth(2, REMOTE, VM, tun_id=0x64), 60)
    assert [o.port for o in br.process(eth(1, VM, REMOTE, vlan=1), 60)] == [2]


def test_learned_flow_hard_timeout_expires_and_unicast_floods_again(clock: Clock) -> None:
    br = _br_tun(clock)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    clock.advance(299)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)  # re-learning refreshes the timer
    clock.advance(299)
    assert br.expire() == 0
    assert [o.port for o in br.process(eth(1, VM, REMOTE, vlan=1), 60)] == [3]
    clock.advance(2)
    assert br.expire() == 1
    assert [o.port for o in br.process(eth(1, VM, REMOTE, vlan=1), 60)] == [2, 3]


def test_unknown_vni_from_tunnel_is_dropped_and_counted(clock: Clock) -> None:
    br = _br_tun(clock)
    assert br.process(eth(3, REMOTE, VM, tun_id=0x65), 60) == []
    assert sum(br.drops.values()) == 1
    assert br.dump_flows("table=20", stats=False) == ["table=20, priority=0 actions=resubmit(,22)"]


def test_trace_changes_nothing(clock: Clock) -> None:
    br = _br_tun(clock)
    before = br.dump_flows()
    trace = br.trace(f"in_port=3,tun_id=0x64,dl_src={REMOTE},dl_dst={VM}")
    assert trace.outputs == [1]
    assert [(s.table, s.priority) for s in trace.steps] == [(0, 1), (4, 1), (10, 1)]
    assert br.dump_flows() == before


def test_trace_generate_learns_like_a_real_packet(clock: Clock) -> None:
    br = _br_tun(clock)
    trace = br.trace(f"in_port=3,tun_id=0x64,dl_src={REMOTE},dl_dst={VM}", generate=True)
    assert "suppressing side effects" not in trace.to_text()
    assert [o.port for o in br.process(eth(1, VM, REMOTE, vlan=1), 60)] == [3]


def test_mac_flood_of_one_network_cannot_fill_table_20_for_another(clock: Clock) -> None:
    br = _br_tun(clock, learn_limit_per_vlan=3)
    br.add_flow("table=4,priority=1,tun_id=0x65 actions=mod_vlan_vid:2,resubmit(,10)")
    # an attacker on network 0x64 (local VLAN 1) sends from many source MACs
    for i in range(10):
        br.process(eth(3, f"fa:16:3e:66:00:{i:02x}", VM, tun_id=0x64), 60)
    assert len(br.dump_flows("table=20")) == 1 + 3  # the default flow + the cap
    assert br.learn_limit_hits == 7
    # network 0x65 (local VLAN 2) still learns its MACs
    br.process(eth(2, REMOTE, VM, tun_id=0x65), 60)
    assert any("vlan_tci=0x0002/0x0fff" in line for line in br.dump_flows("table=20"))
    # once learned flows of VLAN 1 expire, VLAN 1 can learn again
    clock.advance(301)
    br.expire()
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    assert any("vlan_tci=0x0001/0x0fff" in line for line in br.dump_flows("table=20"))


def test_drops_are_counted_by_reason_and_by_table(clock: Clock) -> None:
    br = _br_tun(clock)
    br.process(eth(3, REMOTE, VM, tun_id=0x99), 60)  # unknown VNI: table 4's drop flow
    br.process(eth(9, REMOTE, VM), 60)  # unknown input port: table 0's drop flow
    assert br.drops == {"action_drop": 2}
    assert br.drops_by_table == {4: 1, 0: 1}


def test_relearning_the_same_mac_does_not_change_the_table_version(clock: Clock) -> None:
    br = _br_tun(clock)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    state = (br.version, br.changes.seq)
    br.process(eth(3, REMOTE, VM, tun_id=0x64), 60)
    assert (br.version, br.changes.seq) == state
    br.process(eth(2, REMOTE, VM, tun_id=0x64), 60)  # moved: forwarding changes
    assert (br.version, br.changes.seq) != state
