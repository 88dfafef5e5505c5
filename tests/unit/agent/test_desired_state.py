"""The agent's desired state: which vNICs are bound, which tunnels exist, which flows br-tun has.

Expectations follow the Neutron Open vSwitch agent's behaviour (ovs_neutron_agent + l2pop):
full mesh without l2pop; with l2pop a tunnel only between hosts sharing a network with ports.
"""

from __future__ import annotations

from tunnelnet.agent.desired import (
    AgentConfig,
    NetworkFlowMemo,
    assign_local_vlans,
    br_tun_flows,
    plan_bindings,
    plan_tunnels,
    port_tags,
)
from tunnelnet.agent.local_vlan import LocalVlanManager
from tunnelnet.agent.view import CloudView, Network, Peer, Port, Vnic

HV1 = AgentConfig(host="hv1", tunnel_ip="192.0.2.1", tunnel_types=frozenset({"vxlan", "gre"}))


def _view(*, ports: list[Port], peers: list[Peer] | None = None) -> CloudView:
    nets = [Network("net-a", "vxlan", 1001), Network("net-b", "vxlan", 1002),
            Network("net-g", "gre", 77)]
    peers = peers if peers is not None else [
        Peer("hv1", "192.0.2.1", frozenset({"vxlan", "gre"})),
        Peer("hv2", "192.0.2.2", frozenset({"vxlan", "gre"})),
        Peer("hv3", "192.0.2.3", frozenset({"vxlan"})),
    ]
    return CloudView(networks={n.id: n for n in nets}, ports={p.id: p for p in ports},
                     peers={p.host: p for p in peers})


def test_vnic_is_bound_only_by_iface_id_of_a_port_bound_to_this_host() -> None:
    view = _view(ports=[
        Port("p1", "net-a", "fa:16:3e:00:00:01", ("10.0.0.1",), host="hv1"),
        Port("p2", "net-a", "fa:16:3e:00:00:02", ("10.0.0.2",), host="hv2"),
    ])
    vnics = [Vnic("tap1", 5, "p1"), Vnic("tap2", 6, "p2"), Vnic("tap3", 7, None),
             Vnic("tap4", 8, "no-such-port")]
    bound, dead = plan_bindings(HV1, view, vnics)
    assert [b.vnic.name for b in bound] == ["tap1"]
    # a vNIC claiming another host's port, or none, stays on the dead VLAN
    assert sorted(v.name for v in dead) == ["tap2", "tap3", "tap4"]
    vlans = assign_local_vlans(LocalVlanManager(), bound)
    assert port_tags(bound, dead, vlans) == {"tap1": 1, "tap2": 4095, "tap3": 4095,
                                             "tap4": 4095}


def test_without_l2pop_tunnels_form_a_full_mesh_per_common_type() -> None:
    view = _view(ports=[])
    names = {(t.name, t.remote_ip) for t in plan_tunnels(HV1, view, [])}
    assert names == {("vxlan-c0000202", "192.0.2.2"), ("gre-c0000202", "192.0.2.2"),
                     ("vxlan-c0000203", "192.0.2.3")}


def test_a_peer_whose_agent_is_dead_keeps_its_tunnel() -> None:
    # its switch forwards without its agent (issue 21: a restart that waits 30 s for a late
    # controller sends no heartbeat meanwhile); BFD, not the agent's heartbeat, judges the
    # datapath
    peers = [Peer("hv2", "192.0.2.2", frozenset({"vxlan"}), alive=False)]
    assert [(t.name, t.remote_ip) for t in plan_tunnels(HV1, _view(ports=[], peers=peers), [])
            ] == [("vxlan-c0000202", "192.0.2.2")]


def test_a_peer_whose_agent_is_dead_stays_in_the_l2pop_flood_list() -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=True)
    local = Port("p1", "net-a", "fa:16:3e:00:00:01", ("10.0.0.1",), host="hv1")
    remote = Port("p2", "net-a", "fa:16:3e:00:00:02", ("10.0.0.2",), host="hv2")
    peers = [Peer("hv2", "192.0.2.2", frozenset({"vxlan"}), alive=False)]
    view = _view(ports=[local, remote], peers=peers)
    assert [t.name for t in plan_tunnels(conf, view, [view.networks["net-a"]])] == [
        "vxlan-c0000202"]


def test_with_l2pop_a_tunnel_exists_only_while_hosts_share_a_network_with_ports() -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=True)
    local = Port("p1", "net-a", "fa:16:3e:00:00:01", ("10.0.0.1",), host="hv1")
    on_hv2_same_net = Port("p2", "net-a", "fa:16:3e:00:00:02", ("10.0.0.2",), host="hv2")
    on_hv3_other_net = Port("p3", "net-b", "fa:16:3e:00:00:03", ("10.0.0.3",), host="hv3")
    view = _view(ports=[local, on_hv2_same_net, on_hv3_other_net])
    net_a = view.networks["net-a"]
    assert [t.name for t in plan_tunnels(conf, view, [net_a])] == ["vxlan-c0000202"]
    # the shared-network condition ends: the tunnel goes
    view_after = _view(ports=[local, on_hv3_other_net])
    assert plan_tunnels(conf, view_after, [net_a]) == []


def test_br_tun_flood_list_and_l2pop_entries_follow_the_network() -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=True,
                       arp_responder=True)
    local = Port("p1", "net-a", "fa:16:3e:00:00:01", ("10.0.0.1",), host="hv1")
    remote = Port("p2", "net-a", "fa:16:3e:00:00:02", ("10.0.0.2",), host="hv2")
    other_tenant = Port("p9", "net-b", "fa:16:3e:00:00:09", ("10.0.0.2",), host="hv2")
    view = _view(ports=[local, remote, other_tenant])
    flows = br_tun_flows(conf, view, cookie=0xABC, patch_int_ofport=1,
                         local_networks=[view.networks["net-a"]], local_vlans={"net-a": 1},
                         tunnel_ofports={"vxlan-c0000202": 3})
    text = {f.add_text() for f in flows}
    assert "table=0,priority=1,in_port=3 actions=resubmit(,4)" in text
    assert "table=4,priority=1,tun_id=0x3e9 actions=mod_vlan_vid:1,resubmit(,10)" in text
    assert ("table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x3e9,output:3"
            in text)
    assert ("table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:02 "
            "actions=strip_vlan,load:0x3e9->NXM_NX_TUN_ID[],output:3") in text
    arp = [f for f in flows if f.table == 21 and f.priority == 1]
    assert [f.match for f in arp] == ["arp,dl_vlan=1,arp_tpa=10.0.0.2"]
    # nothing of net-b (another tenant, same IP) is programmed on a host without its ports
    assert not any("0x3ea" in t or "fa:16:3e:00:00:09" in t for t in text)


def test_network_with_no_reachable_peer_floods_nowhere() -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=True)
    view = _view(ports=[Port("p1", "net-a", "fa:16:3e:00:00:01", host="hv1")])
    flows = br_tun_flows(conf, view, cookie=1, patch_int_ofport=1,
                         local_networks=[view.networks["net-a"]], local_vlans={"net-a": 1},
                         tunnel_ofports={})
    # no flood entry at all: table 22's miss flow drops the network's broadcasts
    assert [f for f in flows if f.table == 22] == [f for f in flows if f.table == 22
                                                  and f.priority == 0 and f.actions == "drop"]


def test_vlan_network_is_carried_only_when_its_physical_network_is_mapped() -> None:
    vlan = Network("net-v", "vlan", 1100, physical_network="physnet1")
    other = Network("net-w", "vlan", 1200, physical_network="physnet2")
    flat = Network("net-f", "flat", None, physical_network="physnet1")
    view = CloudView(networks={n.id: n for n in (vlan, other, flat)},
                     ports={"p1": Port("p1", "net-v", "fa:16:3e:00:00:01", host="hv1"),
                            "p2": Port("p2", "net-w", "fa:16:3e:00:00:02", host="hv1"),
                            "p3": Port("p3", "net-f", "fa:16:3e:00:00:03", host="hv1")})
    conf = AgentConfig("hv1", "192.0.2.1", bridge_mappings={"physnet1": "br-eth1"})
    bound, dead = plan_bindings(conf, view, [Vnic("t1", 1, "p1"), Vnic("t2", 2, "p2"),
                                             Vnic("t3", 3, "p3")])
    assert sorted(b.vnic.name for b in bound) == ["t1", "t3"]
    assert [v.name for v in dead] == ["t2"]  # physnet2 is not reachable from this host
    # provider networks never show up in br-tun
    flows = br_tun_flows(conf, view, cookie=1, patch_int_ofport=1,
                         local_networks=[b.network for b in bound],
                         local_vlans={"net-v": 1, "net-f": 2}, tunnel_ofports={})
    assert not any(f.table in (3, 4, 22) and f.priority == 1 for f in flows)


def test_provider_flows_translate_local_vlan_to_the_provider_vlan_and_back() -> None:
    from tunnelnet.agent import br_phys

    out = br_phys.outbound(phy_patch_ofport=2, local_vid=1, network_type="vlan", segment=1100)
    back = br_phys.inbound(int_patch_ofport=5, local_vid=1, network_type="vlan", segment=1100)
    assert out.add_text() == ("table=0,priority=4,in_port=2,dl_vlan=1 "
                              "actions=mod_vlan_vid:1100,NORMAL")
    assert back.add_text() == ("table=0,priority=3,in_port=5,dl_vlan=1100 "
                               "actions=mod_vlan_vid:1,resubmit(,60)")
    flat = br_phys.inbound(int_patch_ofport=5, local_vid=2, network_type="flat", segment=None)
    assert flat.match == "in_port=5,vlan_tci=0x0000/0x1fff"


def test_br_tun_flows_kept_from_the_last_plan_are_those_planned_afresh() -> None:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=True)
    mine = [Port("p1", "net-a", "fa:16:3e:00:00:01", host="hv1"),
            Port("p2", "net-b", "fa:16:3e:00:00:02", host="hv1")]
    remote = [Port("r1", "net-a", "fa:16:3e:00:01:01", host="hv2"),
              Port("r2", "net-b", "fa:16:3e:00:01:02", host="hv3")]
    tunnels = {"vxlan-c0000202": 3, "vxlan-c0000203": 4}
    memo = NetworkFlowMemo()

    def plan(view: CloudView, ofports: dict[str, int], *, keep: bool) -> list:
        nets = [view.networks["net-a"], view.networks["net-b"]]
        return br_tun_flows(conf, view, cookie=1, patch_int_ofport=1, local_networks=nets,
                            local_vlans={"net-a": 1, "net-b": 2}, tunnel_ofports=ofports,
                            memo=memo if keep else None)

    first = plan(_view(ports=mine + remote), tunnels, keep=True)
    # a port arrives on net-a (behind hv3); net-b's records are the same objects as before
    arrived = Port("r3", "net-a", "fa:16:3e:00:01:03", host="hv3")
    view = _view(ports=[*mine, *remote, arrived])
    kept = plan(view, tunnels, keep=True)
    assert [f.add_text() for f in kept] == [f.add_text() for f in plan(view, tunnels,
                                                                      keep=False)]
    assert ("table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:01:03 "
            "actions=strip_vlan,load:0x3e9->NXM_NX_TUN_ID[],output:4") in {
                f.add_text() for f in kept}
    # net-b was not planned again: its entry is the very one of the first plan
    old_b = [f for f in first if "dl_dst=fa:16:3e:00:01:02" in f.match]
    new_b = [f for f in kept if "dl_dst=fa:16:3e:00:01:02" in f.match]
    assert len(new_b) == 1 and new_b[0] is old_b[0]
    # and of net-a, planned again, the entry of the port that was there already is kept
    old_a = [f for f in first if "dl_dst=fa:16:3e:00:01:01" in f.match]
    new_a = [f for f in kept if "dl_dst=fa:16:3e:00:01:01" in f.match]
    assert len(new_a) == 1 and new_a[0] is old_a[0]
    # the tunnel to hv3 came back on another port: both networks' entries follow it
    moved = {"vxlan-c0000202": 3, "vxlan-c0000203": 7}
    again = plan(view, moved, keep=True)
    assert [f.add_text() for f in again] == [f.add_text() for f in plan(view, moved,
                                                                       keep=False)]
    assert not any(f.actions.endswith("output:4") for f in again)
