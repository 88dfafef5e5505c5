"""verify's comparisons on made-up tables: each kind of difference is named once, learned
entries are left alone, and flows printed differently by the two switches compare equal."""

from __future__ import annotations

from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.desired import TunnelPort
from tunnelnet.verify.diff import VnicIntent, current_cookie, diff_flows, diff_tags, diff_tunnels
from tunnelnet.verify.flows import ParsedFlow, parse_line

COOKIE = 0xC0FFEE
LEARN = ("learn(table=20,priority=1,hard_timeout=300,cookie=0xc0ffee,NXM_OF_VLAN_TCI[0..11],"
         "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
         "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])")
# what an agent wants on a small br-tun: patch-int is port 1, tunnels are ports 2 and 3
WANTED_TEXT = [
    "table=0,priority=1,in_port=1 actions=resubmit(,2)",
    "table=4,priority=1,tun_id=0x3e9 actions=mod_vlan_vid:1,resubmit(,10)",
    f"table=10,priority=1 actions={LEARN},output:1",
    "table=20,priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:02 "
    "actions=strip_vlan,load:0x3e9->NXM_NX_TUN_ID[],output:2",
    "table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x3e9,output:2,output:3",
]


def _wanted() -> dict[tuple[int, int, str], ParsedFlow]:
    flows = [parse_line(f"cookie={COOKIE:#x},{text}") for text in WANTED_TEXT]
    return {f.key: f for f in flows}


def _dump(*lines: str) -> list[ParsedFlow]:
    return [parse_line(line) for line in lines]


# the same flows as a switch lists them: stats, and (table 20) Open vSwitch's set_field words
INSTALLED = [
    "cookie=0xc0ffee, duration=3.1s, table=0, n_packets=4, n_bytes=300, idle_age=1, "
    "priority=1,in_port=1 actions=resubmit(,2)",
    "cookie=0xc0ffee, duration=3.1s, table=4, n_packets=0, n_bytes=0, idle_age=3, "
    "priority=1,tun_id=0x3e9 actions=mod_vlan_vid:1,resubmit(,10)",
    f"cookie=0xc0ffee, duration=3.1s, table=10, n_packets=0, n_bytes=0, idle_age=3, "
    f"priority=1 actions={LEARN},output:1",
    "cookie=0xc0ffee, duration=3.1s, table=20, n_packets=0, n_bytes=0, idle_age=3, "
    "priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:02 "
    "actions=strip_vlan,set_field:0x3e9->tun_id,output:2",
    "cookie=0xc0ffee, duration=3.1s, table=22, n_packets=0, n_bytes=0, idle_age=3, "
    "priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x3e9,output:2,output:3",
]
PORTS = {1: "patch-int", 2: "vxlan-c0000202", 3: "vxlan-c0000203"}


def _kinds(findings: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(f.kind.value for f in findings)


def test_the_same_flows_printed_by_either_switch_are_no_finding() -> None:
    result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED), cookie=COOKIE, ofports=PORTS)
    assert result.findings == []
    assert result.checked == 5 and result.learned == 0


def test_a_deleted_flow_is_missing_and_named_by_its_table_and_match() -> None:
    result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED[:3], INSTALLED[4]),
                        cookie=COOKIE, ofports=PORTS)
    (found,) = result.findings
    assert found.kind.value == "missing_flow" and found.bridge == "br-tun"
    assert "table=20" in found.subject and "dl_dst=fa:16:3e:00:00:02" in found.subject


def test_a_flood_list_without_one_tunnel_is_one_finding_with_the_wanted_actions() -> None:
    fewer = INSTALLED[4].replace(",output:3", "")
    result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED[:4], fewer), cookie=COOKIE,
                        ofports=PORTS)
    (found,) = result.findings
    assert found.kind.value == "wrong_actions"
    assert found.detail == ("wanted actions=strip_vlan,set_tunnel:0x3e9,output:2,output:3; "
                            "lacks output:3 (vxlan-c0000203)")
    assert "output:3" not in found.subject


def test_an_extra_flow_is_unexpected_with_the_agents_cookie_or_none_and_stale_with_another(
        ) -> None:
    extra = ("cookie={}, table=22, priority=1,dl_vlan=9 actions=drop")
    for cookie, kind in ((COOKIE, "unexpected_flow"), (0, "unexpected_flow"),
                         (0xBAD0, "stale_cookie")):
        result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED, extra.format(hex(cookie))),
                            cookie=COOKIE, ofports=PORTS)
        assert _kinds(result.findings) == [kind], cookie
        assert "dl_vlan=9" in result.findings[0].subject


def test_a_wanted_flow_under_an_old_cookie_is_stale_not_missing() -> None:
    old = INSTALLED[1].replace("0xc0ffee", "0x1234", 1)
    result = diff_flows("br-tun", _wanted(), _dump(INSTALLED[0], old, *INSTALLED[2:]),
                        cookie=COOKIE, ofports=PORTS)
    (found,) = result.findings
    assert found.kind.value == "stale_cookie" and "cookie=0x1234" in found.subject


def test_outputs_to_a_port_the_bridge_lacks_are_found_on_wanted_and_learned_flows() -> None:
    learned = ("cookie=0xc0ffee, duration=1s, table=20, n_packets=0, n_bytes=0, "
               "hard_timeout=300, idle_age=1, priority=1,dl_vlan=1,dl_dst=fa:16:3e:00:00:09 "
               "actions=load:0->NXM_OF_VLAN_TCI[],load:0x3e9->NXM_NX_TUN_ID[],output:3")
    result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED, learned), cookie=COOKIE,
                        ofports={1: "patch-int", 2: "vxlan-c0000202"})  # 3 was deleted
    dead = [f for f in result.findings if f.kind.value == "dead_output"]
    assert sorted(("table=22" in f.subject, "fa:16:3e:00:00:09" in f.subject) for f in dead) \
        == [(False, True), (True, False)]
    assert all(f.detail == "port 3 is not on br-tun" for f in dead)
    assert result.learned == 1


def test_learned_entries_are_not_intent_but_a_hand_made_flow_in_their_table_is() -> None:
    learned = ("cookie=0xc0ffee, duration=1s, table=20, n_packets=5, n_bytes=500, "
               "hard_timeout=300, idle_age=1, priority=1,dl_vlan=1,dl_dst=fa:16:3e:00:00:07 "
               "actions=load:0->NXM_OF_VLAN_TCI[],load:0x3e9->NXM_NX_TUN_ID[],output:2")
    by_hand = ("cookie=0x0, table=20, priority=1,dl_vlan=1,dl_dst=fa:16:3e:00:00:08 "
               "actions=output:2")  # no timeout: learn() never makes such a flow
    result = diff_flows("br-tun", _wanted(), _dump(*INSTALLED, learned, by_hand),
                        cookie=COOKIE, ofports=PORTS)
    assert _kinds(result.findings) == ["unexpected_flow"]
    assert "fa:16:3e:00:00:08" in result.findings[0].subject
    assert result.learned == 1


def test_the_current_generation_is_the_canarys_cookie_else_the_most_common() -> None:
    canary = parse_line("cookie=0x77, table=23, priority=0 actions=drop")
    flows = _dump(*INSTALLED)
    assert current_cookie(canary, flows) == 0x77
    assert current_cookie(None, flows) == COOKIE
    assert current_cookie(None, []) is None


def _tunnel(name: str, kind: str, remote: str, ofport: int) -> SwitchPort:
    return SwitchPort(name=name, ofport=ofport, type=kind, options={"remote_ip": remote})


def test_tunnel_ports_missing_unknown_and_unneeded() -> None:
    wanted = [TunnelPort("vxlan-c0000202", "vxlan", "192.0.2.2"),
              TunnelPort("gre-c0000202", "gre", "192.0.2.2")]
    ports = [SwitchPort("patch-int", 1, "patch"),
             _tunnel("vxlan-c0000202", "vxlan", "192.0.2.2", 2),
             _tunnel("vxlan-0a636363", "vxlan", "10.99.99.99", 3),  # no agent has it
             _tunnel("gre-c0000203", "gre", "192.0.2.3", 4),  # a known host, not wanted
             _tunnel("odd-name", "geneve", "10.1.1.1", 5)]  # a tunnel by type, whatever name
    found = {(f.kind.value, f.subject) for f in
             diff_tunnels(wanted, ports, {"192.0.2.1", "192.0.2.2", "192.0.2.3"}, "br-tun")}
    assert found == {("missing_tunnel", "gre-c0000202"), ("unknown_tunnel", "vxlan-0a636363"),
                     ("unexpected_tunnel", "gre-c0000203"), ("unknown_tunnel", "odd-name")}


def test_a_wanted_tunnel_name_to_another_address_is_found() -> None:
    wanted = [TunnelPort("vxlan-c0000202", "vxlan", "192.0.2.2")]
    ports = [_tunnel("vxlan-c0000202", "vxlan", "192.0.2.3", 2)]
    (found,) = diff_tunnels(wanted, ports, {"192.0.2.2", "192.0.2.3"}, "br-tun")
    assert found.kind.value == "unexpected_tunnel" and "wanted vxlan to 192.0.2.2" in found.detail


def test_vnic_tags_wrong_dead_and_not_dead() -> None:
    intents = [VnicIntent("tap-a", 1, "port a on red"), VnicIntent("tap-b", 2, "port b on blue"),
               VnicIntent("tap-c", 1, "port c on red"), VnicIntent("tap-d", 4095, "unbound"),
               VnicIntent("tap-e", 4095, "unbound")]
    tags: dict[str, int | None] = {"tap-a": 1, "tap-b": 1, "tap-c": 4095, "tap-d": 4095,
                                   "tap-e": None}
    found = {(f.kind.value, f.subject) for f in diff_tags(intents, tags, "br-int")}
    assert found == {("wrong_vlan", "tap-b"), ("dead_vlan", "tap-c"), ("not_dead", "tap-e")}
