"""The tuple-space classifier gives the same answer as a naive scan of every flow."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.switch.classifier import Classifier
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import Match

# A small universe so random flows and keys collide often.
FIELDS = {
    "in_port": (st.integers(1, 4), st.just(0xFFFFFFFF)),
    "vlan_tci": (
        st.sampled_from([0, 0x1001, 0x1002, 0x3001]),
        st.sampled_from([0xFFFF, 0x1FFF, 0x1000, 0x0FFF]),
    ),
    "dl_dst": (
        st.sampled_from([0, 1 << 40, 0xFA163E000001, 0xFFFFFFFFFFFF]),
        st.sampled_from([(1 << 48) - 1, 1 << 40]),
    ),
    "tun_id": (st.integers(0, 3), st.sampled_from([0xFFFFFFFFFFFFFFFF, 0x1, 0x2])),
    "reg0": (st.integers(0, 3), st.sampled_from([0xFFFFFFFF, 0x1])),
    "tp_dst": (st.sampled_from([22, 80, 443]), st.sampled_from([0xFFFF, 0xFF00])),
}  # fmt: skip


@st.composite
def matches(draw: st.DrawFn) -> Match:
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=4))
    constraints = {}
    for name in names:
        values, masks = FIELDS[name]
        constraints[name] = (draw(values), draw(masks))
    return Match.of(constraints)


@st.composite
def keys(draw: st.DrawFn) -> dict[str, int]:
    key = {name: draw(values) for name, (values, _) in FIELDS.items()}
    if draw(st.booleans()):
        del key["tp_dst"]  # a packet without the field (no L4): such flows cannot match it
    return key


def _naive(flows: list[FlowEntry], key: dict[str, int]) -> int:
    return max((f.priority for f in flows if f.match.matches(key)), default=-1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(matches(), st.integers(0, 6)), max_size=40),
    st.lists(keys(), min_size=1, max_size=10),
    st.data(),
)
def test_lookup_agrees_with_linear_scan(
    specs: list[tuple[Match, int]], probe: list[dict[str, int]], data: st.DataObject
) -> None:
    cls = Classifier()
    flows: list[FlowEntry] = []
    for seq, (match, priority) in enumerate(specs):
        if cls.find_exact(match, priority) is not None:
            continue  # same match and priority is the same flow
        entry = FlowEntry(table=0, priority=priority, match=match, actions=(), seq=seq)
        cls.insert(entry)
        flows.append(entry)
    # remove some, so deletion keeps the groups' priority bookkeeping right
    for entry in data.draw(st.lists(st.sampled_from(flows), unique=True)) if flows else []:
        cls.remove(entry)
        flows.remove(entry)
    assert len(cls) == len(flows)
    for key in probe:
        found = cls.lookup(key)
        want = _naive(flows, key)
        if want < 0:
            assert found is None
        else:
            assert found is not None
            assert found.priority == want
            assert found.match.matches(key)
