"""The grouped applier leaves the switch holding exactly the desired flows, as a whole-set diff
would, whatever changes from round to round.

Driven against the simulation's switch (the real flow tables of ``tunnelnet.switch`` behind
the agent's backend interface). The oracle is a fresh switch given the desired flows in one
batch: after every apply both must dump the same flows, cookies included. The counts of flows
added and removed must be those of a diff of the whole set against what is installed (the
rule before groups), so a group skipped by identity never hides a change.
"""

from __future__ import annotations

import re
from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.agent.applier import FlowApplier
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.lab.sim_switch import SimBackend, SimSwitch

BRIDGE = "br-tun"
KEYS = [(table, priority, match) for table in (0, 20, 22) for priority in (1, 2)
        for match in ("", "dl_vlan=1", "dl_vlan=2", "dl_vlan=3,dl_dst=fa:16:3e:00:00:01")]
ACTIONS = ["drop", "output:1", "output:2", "strip_vlan,output:3", "resubmit(,22)"]
GROUPS: list[Hashable] = [("br-tun",), "net-a", "net-b", "net-c"]
_COUNTERS = re.compile(r" (duration|n_packets|n_bytes|idle_age)=[^,]*,")

Key = tuple[int, int, str]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(range(len(KEYS))),
              st.sampled_from(range(len(GROUPS))), st.sampled_from(range(len(ACTIONS)))),
    st.tuples(st.just("drop"), st.sampled_from(range(len(KEYS)))),
    st.tuples(st.just("drop_group"), st.sampled_from(range(len(GROUPS)))),
    st.tuples(st.just("apply"), st.booleans()),
    st.tuples(st.just("forget")),
    st.tuples(st.just("new_generation")),
)


def _fresh_switch() -> SimBackend:
    backend = SimBackend(SimSwitch("hv1", "192.0.2.1"))
    backend.ensure_bridge(BRIDGE, fail_secure=True)
    return backend


def _flows(backend: SimBackend) -> set[str]:
    return {_COUNTERS.sub("", line) for line in backend.dump_flows(BRIDGE)}


def _oracle(flows: list[FlowMod], cookie: int) -> set[str]:
    backend = _fresh_switch()
    if flows:
        backend.add_flows(BRIDGE, [f.add_text(cookie) for f in flows])
    return _flows(backend)


class _Rounds:
    """Desired flows by group, the applier under test, and the whole-set rule's bookkeeping."""

    def __init__(self) -> None:
        self.backend = _fresh_switch()
        # a previous agent generation's flows: the first apply must sweep them
        self.backend.add_flows(BRIDGE, ["cookie=0x99,table=0,priority=9,dl_vlan=9 actions=drop"])
        self.cookie = 1
        self.applier = FlowApplier(self.backend, BRIDGE, self.cookie)
        self.owner: dict[Key, tuple[Hashable, str]] = {}  # key -> (group, actions)
        self.lists: dict[Hashable, list[FlowMod]] = {}  # as handed over last time
        self.installed: dict[Key, str] = {}  # what the whole-set rule thinks is installed

    def groups(self, fresh: bool) -> dict[Hashable, list[FlowMod]]:
        out: dict[Hashable, list[FlowMod]] = {}
        for group in GROUPS:
            flows = [FlowMod(*key, actions) for key, (owner, actions) in self.owner.items()
                     if owner == group]
            if not flows:
                continue
            last = self.lists.get(group)
            # an unchanged group is handed over as the very list of last time, as the
            # agent's memo does; with ``fresh``, as an equal new list
            out[group] = last if last == flows and not fresh else flows
        self.lists = dict(out)
        return out

    def apply(self, fresh: bool) -> None:
        groups = self.groups(fresh)
        wanted = [f for flows in groups.values() for f in flows]
        desired = {(f.table, f.priority, f.match): f.actions for f in wanted}
        expected = (sum(1 for k, a in desired.items() if self.installed.get(k) != a),
                    sum(1 for k in self.installed if k not in desired))
        assert self.applier.apply_groups(groups) == expected
        self.installed = desired
        assert _flows(self.backend) == _oracle(wanted, self.cookie)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_grouped_apply_leaves_exactly_the_desired_flows(ops: list[tuple]) -> None:
    rounds = _Rounds()
    for step in ops:
        kind = step[0]
        if kind == "put":  # a new key, new actions, or a key moving to another group
            rounds.owner[KEYS[step[1]]] = (GROUPS[step[2]], ACTIONS[step[3]])
        elif kind == "drop":
            rounds.owner.pop(KEYS[step[1]], None)
        elif kind == "drop_group":
            rounds.owner = {k: v for k, v in rounds.owner.items() if v[0] != GROUPS[step[1]]}
        elif kind == "apply":
            rounds.apply(fresh=step[1])
        elif kind == "forget":  # the switch restarted empty
            del rounds.backend.switch.bridges[BRIDGE]
            rounds.backend.ensure_bridge(BRIDGE, fail_secure=True)
            rounds.applier.forget()
            rounds.installed = {}
        else:  # a failed request left a stray flow; a new cookie must sweep it
            rounds.backend.add_flows(BRIDGE, [
                f"cookie={rounds.cookie:#x},table=22,priority=7,dl_vlan=7 actions=drop"])
            rounds.cookie += 1
            rounds.applier.new_generation(rounds.cookie)
            rounds.installed = {}
    rounds.apply(fresh=False)


def test_an_unchanged_group_is_not_read_again() -> None:
    """The same list object is taken as applied: the applier does not look at it (here: a
    change made to it behind the applier's back stays unseen, which is why the agent hands
    over a new list for a changed group)."""
    backend = _fresh_switch()
    applier = FlowApplier(backend, BRIDGE, 1)
    base = [FlowMod(0, 1, "", "drop")]
    net = [FlowMod(20, 2, "dl_vlan=1", "output:1")]
    assert applier.apply_groups({"base": base, "net": net}) == (2, 0)
    net.append(FlowMod(20, 2, "dl_vlan=2", "output:2"))
    assert applier.apply_groups({"base": base, "net": net}) == (0, 0)
    assert applier.apply_groups({"base": base, "net": list(net)}) == (1, 0)


def test_a_flow_moving_between_groups_is_never_deleted() -> None:
    backend = _fresh_switch()
    applier = FlowApplier(backend, BRIDGE, 1)
    moving = FlowMod(20, 2, "dl_vlan=1", "output:1")
    applier.apply_groups({"a": [moving], "b": []})
    changes = backend.switch.changes  # the switch counts each request that changed it
    # both orders of the two groups: the one losing the key may come first or last
    assert applier.apply_groups({"a": [], "b": [moving]}) == (0, 0)
    assert applier.apply_groups({"b": [], "a": [moving]}) == (0, 0)
    assert backend.switch.changes == changes
    assert _flows(backend) == _oracle([moving], 1)
