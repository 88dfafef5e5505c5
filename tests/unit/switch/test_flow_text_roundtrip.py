"""Property: any flow we accept prints to text that reads back to the same flow.

Random flows are built as text from the ovs-ofctl vocabulary tunnelnet supports
(support/flow_text.py); parsing, printing, re-parsing and re-printing must be a fixed
point, and the match must accept the same keys after the round trip."""

from __future__ import annotations

from hypothesis import assume, given, settings

from support.flow_text import flows
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import FlowSyntaxError


@settings(max_examples=150, deadline=None)
@given(flows())
def test_printed_flow_reads_back_to_the_same_flow(text: str) -> None:
    first = Bridge("a", fail_mode="secure")
    try:
        first.add_flow(text)
    except FlowSyntaxError as err:
        # strip_vlan before push_vlan on a flow that does not match a VLAN: Open vSwitch
        # refuses it too (a pop needs a tag in an OpenFlow 1.1+ flow); not this test's subject
        assume("pop_vlan needs a VLAN tag" not in str(err))
        raise
    [printed] = first.dump_flows(stats=False)
    second = Bridge("b", fail_mode="secure")
    second.add_flow(printed)
    assert second.dump_flows(stats=False) == [printed]
    [a], [b] = first.flows(), second.flows()
    assert a.match == b.match and a.priority == b.priority and a.table == b.table
    assert a.actions == b.actions and a.cookie == b.cookie
