"""Flow timeouts and MAC aging, checked against a naive "look at everything" model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.switch import Bridge
from tunnelnet.switch.normal import MacTable

from .conftest import Clock

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 6), st.integers(0, 5), st.integers(0, 5)),
        st.tuples(st.just("hit"), st.integers(1, 6), st.just(0), st.just(0)),
        st.tuples(st.just("tick"), st.integers(0, 4), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_expire_removes_exactly_the_flows_a_full_scan_finds_expired(ops: list) -> None:  # type: ignore[type-arg]
    clock = Clock(0.0)
    br = Bridge("br", fail_mode="secure", clock=clock)
    br.add_port("p1", 1)
    br.add_port("p9", 9)
    for op, port, idle, hard in ops:
        if op == "add":
            br.add_flow(f"idle_timeout={idle},hard_timeout={hard},in_port={port} actions=output:9")
        elif op == "hit":
            br.process({"in_port": port, "dl_src": 1, "dl_dst": 2, "dl_type": 0}, 60)
        else:
            clock.advance(port)
        now = clock()
        want = {e.match.format() for e in br.flows() if e.expired(now) is None}
        br.expire()
        assert {e.match.format() for e in br.flows()} == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)), max_size=40))
def test_mac_table_ages_exactly_the_stale_entries(ops: list[tuple[int, int, int]]) -> None:
    table = MacTable(aging=5, limit_per_vlan=100)
    now = 0.0
    seen: dict[tuple[int, int], tuple[int, float]] = {}
    for mac, port, step in ops:
        now += step
        table.learn(1, mac, port, now)
        seen[(1, mac)] = (port, now)
        table.expire(now)
        for (vlan, m), (p, at) in seen.items():
            want = p if now - at < 5 else None
            assert table.lookup(vlan, m, now) == want
        assert len(table) == sum(1 for _, at in seen.values() if now - at < 5)
