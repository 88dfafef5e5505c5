"""The flow cache never answers differently from walking the tables.

Two identical bridges share one clock: one walks its tables for every packet
(``Bridge.process``, the oracle), the other answers through a ``FlowCache``. Hypothesis makes
random tables (NORMAL, resubmits, VLAN and tunnel rewrites, Neutron's learn(), idle and hard
timeouts) and random sequences of packets drawn from a small set (so flows repeat and hit the
cache), with flow-mods, deletions, port retags, clock advances, expiry and MAC aging in
between. After every step the outputs, and the counters, learned flows, MAC table and drop
counts the walk leaves behind, must be the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.packet.fields import ETH_TYPE_ARP, ETH_TYPE_IPV4, IPPROTO_TCP, VLAN_CFI
from tunnelnet.switch import Bridge
from tunnelnet.switch.cache import FlowCache

from .conftest import Clock

PORTS = (1, 2, 3, 4)
MACS = (0x020000000001, 0x020000000002, 0x020000000003, 0xFFFFFFFFFFFF, 0x0180C2000000)
LEARN = ("learn(table=20,priority=1,hard_timeout={t},NXM_OF_VLAN_TCI[0..11],"
         "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
         "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])")

matches = st.sampled_from([
    "", "in_port=1", "in_port=2", "in_port=3", "dl_vlan=5", "dl_vlan=7", "vlan_tci=0",
    "dl_dst=02:00:00:00:00:02", "dl_src=02:00:00:00:00:01",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "tun_id=0x64", "tcp,tp_dst=80", "arp",
    "in_port=4,dl_vlan=5",
])
actions = st.sampled_from([
    "drop", "NORMAL", "output:1", "output:2", "output:3,output:4", "resubmit(,1)",
    "resubmit(,2)", "resubmit(,20)", "mod_vlan_vid:5,resubmit(,1)", "strip_vlan,output:2",
    "set_tunnel:0x64,output:3", "mod_dl_src:02:00:00:00:00:09,output:4", "in_port",
    "load:0x7->NXM_NX_REG0[],resubmit(,2)", LEARN.format(t=30) + ",output:1",
    LEARN.format(t=5) + ",NORMAL", "FLOOD", "mod_vlan_vid:7,NORMAL",
])
flows = st.builds(
    lambda table, prio, match, act, idle, hard: (
        f"table={table},priority={prio}{',' + match if match else ''}"
        f"{f',idle_timeout={idle}' if idle else ''}{f',hard_timeout={hard}' if hard else ''}"
        f" actions={act}"),
    st.sampled_from([0, 0, 1, 2, 20]), st.integers(0, 3), matches, actions,
    st.sampled_from([0, 0, 3, 10]), st.sampled_from([0, 0, 4, 20]),
)


@st.composite
def packets(draw: st.DrawFn) -> dict[str, int]:
    key = {"in_port": draw(st.sampled_from(PORTS)), "dl_src": draw(st.sampled_from(MACS[:3])),
           "dl_dst": draw(st.sampled_from(MACS)), "vlan_tci": 0}
    vlan = draw(st.sampled_from([None, 5, 7]))
    if vlan is not None:
        key["vlan_tci"] = vlan | VLAN_CFI
    if draw(st.booleans()):
        key["tun_id"] = draw(st.sampled_from([0x64, 0x65]))
    if draw(st.booleans()):
        key.update(dl_type=ETH_TYPE_IPV4, nw_src=0x0A000001, nw_dst=0x0A000002,
                   nw_proto=IPPROTO_TCP, nw_tos=0, nw_ecn=0, nw_ttl=64,
                   tp_src=1000, tp_dst=draw(st.sampled_from([80, 443])), tcp_flags=0x10)
    else:
        key.update(dl_type=ETH_TYPE_ARP, arp_op=1, arp_spa=0x0A000001, arp_tpa=0x0A000002,
                   arp_sha=key["dl_src"], arp_tha=0, nw_proto=1)
    return key


@dataclass(frozen=True)
class Packet:
    key: dict[str, int]
    length: int


@dataclass(frozen=True)
class AddFlow:
    text: str


@dataclass(frozen=True)
class DelFlows:
    text: str


@dataclass(frozen=True)
class Advance:
    seconds: float
    expire: bool


@dataclass(frozen=True)
class Retag:
    port: int
    tag: int | None


def _steps(flow_keys: list[dict[str, int]]) -> st.SearchStrategy[list[object]]:
    # packets come from a few flows so that they repeat and hit the cache
    packet = st.builds(Packet, st.sampled_from(flow_keys), st.sampled_from([60, 1514]))
    return st.lists(st.one_of(
        packet, packet, packet,
        st.builds(AddFlow, flows),
        st.builds(DelFlows, matches),
        st.builds(Advance, st.sampled_from([0.5, 2.0, 4.0, 6.0, 25.0, 40.0, 301.0]),
                  st.booleans()),
        st.builds(Retag, st.sampled_from(PORTS), st.sampled_from([None, 5, 7])),
    ), min_size=1, max_size=60)


# Realistic starting points, so that random packets do reach learn(), NORMAL and timeouts.
BASES = (
    ["priority=0,idle_timeout=10 actions=NORMAL"],
    ["priority=0 actions=NORMAL", "priority=5,in_port=3,idle_timeout=3 actions=output:1"],
    [f"table=0,priority=1,in_port=2 actions={LEARN.format(t=5)},output:1",
     f"table=0,priority=1,in_port=3 actions={LEARN.format(t=30)},NORMAL",
     "table=0,priority=0 actions=resubmit(,20)",
     "table=20,priority=0 actions=mod_vlan_vid:5,NORMAL"],
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[object]]:
    table = [*draw(st.sampled_from(BASES)), *draw(st.lists(flows, max_size=8))]
    flow_keys = draw(st.lists(packets(), min_size=1, max_size=4))
    return table, draw(_steps(flow_keys))


def _bridge(clock: Clock, table: list[str]) -> Bridge:
    br = Bridge("br0", fail_mode="secure", clock=clock, mac_aging=30.0)
    for p in PORTS:
        br.add_port(f"p{p}", p, tag=5 if p == 4 else None)
    br.add_flows(table)
    return br


def _state(br: Bridge) -> tuple[object, ...]:
    return (br.dump_flows(), br.fdb_show(), dict(br.drops), dict(br.drops_by_table),
            {t: (v.n_lookups, v.n_matched) for t, v in br.tables.items()},
            br.learn_limit_hits, br.mac_table.limit_hits)


def _apply(br: Bridge, step: AddFlow | DelFlows | Retag) -> None:
    if isinstance(step, AddFlow):
        br.add_flow(step.text)
    elif isinstance(step, DelFlows):
        br.del_flows(step.text)
    else:
        cfg = br.port(step.port)
        if cfg.tag != step.tag:
            br.del_port(cfg.name)
            br.add_port(cfg.name, cfg.ofport, tag=step.tag)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_cache_gives_the_same_outputs_and_side_effects_as_walking_the_tables(
        scenario: tuple[list[str], list[object]]) -> None:
    table, sequence = scenario
    clock = Clock()
    walked = _bridge(clock, table)
    cached_bridge = _bridge(clock, table)
    cache = FlowCache(cached_bridge)
    for step in sequence:
        if isinstance(step, Packet):
            want = walked.process(dict(step.key), step.length)
            got = cache.process(dict(step.key), step.length)
            assert [(o.port, o.key) for o in got] == [(o.port, o.key) for o in want], step
        elif isinstance(step, Advance):
            clock.advance(step.seconds)
            if step.expire:
                assert walked.expire() == cached_bridge.expire()
        else:
            assert isinstance(step, AddFlow | DelFlows | Retag)
            _apply(walked, step)
            _apply(cached_bridge, step)
        assert _state(cached_bridge) == _state(walked), step


def test_repeated_packets_of_one_flow_are_answered_from_the_cache() -> None:
    clock = Clock()
    br = _bridge(clock, ["priority=0 actions=NORMAL"])
    cache = FlowCache(br)
    key = {"in_port": 1, "dl_src": MACS[0], "dl_dst": MACS[1], "vlan_tci": 0,
           "dl_type": ETH_TYPE_IPV4}
    for _ in range(10):
        cache.process(dict(key), 60)
    # first packet learns the MAC (changes the bridge, so not cached), the second is cached
    assert cache.stats.misses == 2 and cache.stats.hits == 8
    assert br.dump_flows()[0].startswith("cookie=0x0, duration=0s, table=0, n_packets=10,")


def test_a_flow_mod_makes_the_next_packet_walk_the_tables_again() -> None:
    clock = Clock()
    br = _bridge(clock, ["priority=1,in_port=1 actions=output:2"])
    cache = FlowCache(br)
    key = {"in_port": 1, "dl_src": MACS[0], "dl_dst": MACS[1], "vlan_tci": 0}
    assert [o.port for o in cache.process(dict(key), 60)] == [2]
    assert [o.port for o in cache.process(dict(key), 60)] == [2]
    br.add_flow("priority=2,in_port=1 actions=output:3")
    assert [o.port for o in cache.process(dict(key), 60)] == [3]


def _run_twins(table: list[str], sequence: list[object]) -> tuple[Bridge, FlowCache]:
    """The property test's body for one chosen sequence; returns the cached side."""
    clock = Clock()
    walked, cached_bridge = _bridge(clock, table), _bridge(clock, table)
    cache = FlowCache(cached_bridge)
    for step in sequence:
        if isinstance(step, Packet):
            want = [(o.port, o.key) for o in walked.process(dict(step.key), step.length)]
            assert [(o.port, o.key) for o in cache.process(dict(step.key), step.length)
                    ] == want, step
        elif isinstance(step, Advance):
            clock.advance(step.seconds)
            if step.expire:
                assert walked.expire() == cached_bridge.expire()
        else:
            assert isinstance(step, AddFlow | DelFlows | Retag)
            _apply(walked, step)
            _apply(cached_bridge, step)
        assert _state(cached_bridge) == _state(walked), step
    return walked, cache


def _ip(in_port: int, src: int, dst: int, **extra: int) -> Packet:
    return Packet({"in_port": in_port, "dl_src": src, "dl_dst": dst, "vlan_tci": 0,
                   "dl_type": ETH_TYPE_IPV4, **extra}, 60)


def test_a_learned_mac_that_aged_out_floods_again_even_before_expiry_runs() -> None:
    a_to_b, b_to_a = _ip(1, MACS[0], MACS[1]), _ip(2, MACS[1], MACS[0])
    _, cache = _run_twins(["priority=0 actions=NORMAL"],
                          [a_to_b, b_to_a, a_to_b, b_to_a, Advance(25.0, False), a_to_b,
                           Advance(10.0, False), a_to_b])
    # MAC aging is 30 s: b was last seen at 0 s, so at 35 s a->b floods again although its
    # cached answer ("port 2") is of the current bridge version (no expire() ran)
    assert cache.stats.hits >= 1


def test_a_flow_relearned_from_the_cache_keeps_its_hard_timeout_fresh() -> None:
    from_tunnel = _ip(2, MACS[2], MACS[0], tun_id=0x64)
    walked, cache = _run_twins(
        [f"table=0,priority=1,in_port=2 actions={LEARN.format(t=5)},output:1"],
        [from_tunnel, from_tunnel, Advance(4.0, True), from_tunnel, Advance(4.0, True)])
    assert cache.stats.hits >= 1
    # re-learned at 4 s, so at 8 s the learned flow is still there (it would be gone at 5 s)
    assert any("table=20" in line for line in walked.dump_flows())


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.lists(st.integers(1, 5), min_size=60, max_size=60))
def test_a_batch_through_the_cache_leaves_what_its_packets_one_by_one_leave(
        scenario: tuple[list[str], list[object]], counts: list[int]) -> None:
    """The datapath walks the first packet of a burst of one flow (or of a super-frame's
    segments) alone, then, if the answer is cached, the others at once with ``packets`` =
    how many, else one by one. Each packet walked alone is the oracle for the outputs and for
    every counter, learned flow and MAC entry."""
    table, sequence = scenario
    clock = Clock()
    walked = _bridge(clock, table)
    cached_bridge = _bridge(clock, table)
    cache = FlowCache(cached_bridge)
    for step, count in zip(sequence, counts, strict=False):
        if isinstance(step, Packet):
            want = walked.process(dict(step.key), step.length)
            got = cache.process(dict(step.key), step.length)
            assert [(o.port, o.key) for o in got] == [(o.port, o.key) for o in want], step
            if count > 1 and cache.cached(step.key):
                got = cache.process(dict(step.key), step.length * (count - 1), count - 1)
                for _ in range(count - 1):
                    want = walked.process(dict(step.key), step.length)
                    assert [(o.port, o.key) for o in got] == [(o.port, o.key) for o in want]
            else:
                for _ in range(count - 1):
                    want = walked.process(dict(step.key), step.length)
                    got = cache.process(dict(step.key), step.length)
                    assert [(o.port, o.key) for o in got] == [(o.port, o.key) for o in want]
        elif isinstance(step, Advance):
            clock.advance(step.seconds)
            if step.expire:
                assert walked.expire() == cached_bridge.expire()
        else:
            assert isinstance(step, AddFlow | DelFlows | Retag)
            _apply(walked, step)
            _apply(cached_bridge, step)
        assert _state(cached_bridge) == _state(walked), (step, count)
