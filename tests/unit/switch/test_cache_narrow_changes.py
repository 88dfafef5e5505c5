"""The flow cache drops only the answers that what learning changed can touch (changes.py).

On the agent's br-tun, table 10 learns a table-20 flow per remote MAC. An answer that a new
learned flow cannot match (it sent to another MAC) is still given from the cache; one whose
table-20 lookup the new flow matches (it flooded to that MAC) is walked again and gives what
the walk gives on a twin bridge that never caches (the oracle). An answer checked before
what the bounded change log still holds is walked again too.
"""

from __future__ import annotations

from support.flow_tables import (
    FROM_TUNNEL,
    TO_TUNNEL,
    TUNNEL,
    agent_br_tun,
)
from tunnelnet.switch.bridge import Bridge
from tunnelnet.switch.cache import FlowCache
from tunnelnet.switch.changes import Changes
from tunnelnet.switch.xlate import Output

OTHER_MAC, UNKNOWN_MAC = 0x020000000007, 0x020000000009


def _ports(outputs: list[Output]) -> list[tuple[int, int]]:
    return [(o.port, o.key.get("tun_id", 0)) for o in outputs]


def _twins() -> tuple[Bridge, FlowCache, Bridge]:
    cached, walked = agent_br_tun(), agent_br_tun()
    return cached, FlowCache(cached), walked


def _both(cache: FlowCache, walked: Bridge, key: dict[str, int]) -> list[tuple[int, int]]:
    got = _ports(cache.process(dict(key), 100))
    assert got == _ports(walked.process(dict(key), 100))
    return got


def test_a_flow_learned_for_another_mac_leaves_the_answer_cached() -> None:
    br, cache, walked = _twins()
    _both(cache, walked, FROM_TUNNEL)  # table 20 learns REMOTE_MAC
    assert _both(cache, walked, TO_TUNNEL) == [(TUNNEL, FROM_TUNNEL["tun_id"])]
    _both(cache, walked, TO_TUNNEL)
    version, seq, misses = br.version, br.changes.seq, cache.stats.misses
    _both(cache, walked, {**FROM_TUNNEL, "dl_src": OTHER_MAC})  # learns another flow
    assert br.changes.seq == seq + 1 and br.version == version  # a narrow change
    misses = cache.stats.misses
    _both(cache, walked, TO_TUNNEL)
    assert cache.stats.misses == misses  # answered from the cache


def test_a_flow_learned_for_a_flooded_mac_drops_the_flooding_answer() -> None:
    br, cache, walked = _twins()
    to_unknown = {**TO_TUNNEL, "dl_dst": UNKNOWN_MAC}
    flooded = _both(cache, walked, to_unknown)
    _both(cache, walked, to_unknown)  # cached
    _both(cache, walked, {**FROM_TUNNEL, "dl_src": UNKNOWN_MAC})  # now learned
    misses = cache.stats.misses
    assert _both(cache, walked, to_unknown) == flooded  # one peer: flooding is unicast too
    assert cache.stats.misses == misses + 1
    # the walk went by the learned flow, as the oracle's did
    assert _learned_hits(br) == _learned_hits(walked) == {UNKNOWN_MAC: 1}


def _learned_hits(br: Bridge) -> dict[int, int]:
    return {dict((name, value) for name, value, _ in flow.match.fields)["dl_dst"]:
            flow.n_packets for flow in br.tables[20].classifier if flow.learned}


def test_an_answer_older_than_the_change_log_is_walked_again() -> None:
    br, cache, walked = _twins()
    br.changes = Changes(limit=2)
    _both(cache, walked, FROM_TUNNEL)
    _both(cache, walked, TO_TUNNEL)
    for i in range(3):  # three unrelated learned flows: more than the log keeps
        _both(cache, walked, {**FROM_TUNNEL, "dl_src": OTHER_MAC + 0x100 * (i + 1)})
    misses = cache.stats.misses
    _both(cache, walked, TO_TUNNEL)
    assert cache.stats.misses == misses + 1


def test_changes_since_says_when_the_log_no_longer_reaches_back() -> None:
    changes = Changes(limit=2)
    for mac in (1, 2, 3):
        changes.mac(5, mac)
    assert changes.since(3) == []
    assert changes.since(1) == [(5, 2), (5, 3)]
    assert changes.since(0) is None


def test_a_mac_learned_back_from_its_first_port_moves_the_learned_flow_back() -> None:
    """A cached answer that learns a flow refreshes the one it found; once another port's
    frame has changed that flow's actions, the answer must go (the walk installs its own
    actions again), or the flow would stay pointed at the other port."""
    learn = ("learn(table=20,priority=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
             "output:OXM_OF_IN_PORT[])")
    twins = []
    for _ in range(2):
        br = Bridge("br-learn", fail_mode="secure")
        for port in (1, 2, 3):
            br.add_port(f"p{port}", port)
        br.add_flows([f"table=0,priority=1,in_port=1 actions={learn},output:3",
                      f"table=0,priority=1,in_port=2 actions={learn},output:3"])
        twins.append(br)
    cached, walked = twins
    cache = FlowCache(cached)
    frames = [{"in_port": port, "dl_src": OTHER_MAC, "dl_dst": UNKNOWN_MAC, "vlan_tci": 0}
              for port in (1, 1, 2, 2, 1)]  # learned on 1, moved to 2, moved back to 1
    for frame in frames:
        assert _ports(cache.process(dict(frame), 60)) == _ports(walked.process(dict(frame), 60))
    assert _learned_actions(cached) == _learned_actions(walked) == ["(OutputPort(port=1),)"]


def _learned_actions(br: Bridge) -> list[str]:
    return [str(flow.actions) for flow in br.tables[20].classifier if flow.learned]
