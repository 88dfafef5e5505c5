"""Plans (datapath/fastpath.py) never forward differently from walking every bridge.

Two identical switchboards share one clock: the oracle walks every packet (``fast_path``
off), the other follows plans. Two bridges joined by a patch pair, random flow tables on
both (NORMAL, resubmits, VLAN and tunnel-id changes, a MAC rewrite, Neutron's learn(), idle
and hard timeouts), and random sequences of real frames (IPv4 ICMP/UDP/TCP, tagged or not,
from a few flows so that plans are made and followed, also in bursts of one flow) with
flow-mods, deletions, port retags, clock advances and expiry in between. After every step the
frames each port sent must be the same; at random points and at the end, also every port's
counters, and each bridge's flows with their counters, MAC table, table statistics and drop
counts. Flow-mods go through the control service, as in the daemon; the observer settles
deferred plans first, as every reader does, and only then, so that counts stay pending across
many steps in between. The scenarios and the comparison are support/switchboard_scenarios.py,
shared with the kernel mirror's equivalence test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from support.switchboard_scenarios import (
    AGENT_LIKE_A,
    AGENT_LIKE_B,
    MACS,
    Advance,
    Clock,
    Look,
    Send,
    agent_like,
    apply_control,
    observed,
    scenarios,
    sent,
    wire_boards,
)
from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard


@contextmanager
def board(clock: Clock, table_a: list[str], table_b: list[str], *, fast: bool
          ) -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    made.fast_path = fast
    try:
        wire_boards(made, clock)
        for name, table in (("br-a", table_a), ("br-b", table_b)):
            made.bridge(name).bridge.del_flows("")
            made.bridge(name).bridge.add_flows(table)
        yield made
    finally:
        made.close()
        loop.close()


def _apply(made: Switchboard, step: object, clock: Clock) -> None:
    if isinstance(step, Send):
        port = made.ports[step.port]
        run = [step.frame] * step.burst
        port.stats.rx_packets += len(run)  # as the receive loop counts them
        port.stats.rx_bytes += sum(map(len, run))
        if step.lone:
            made.forwarding._follow_lone(port, step.frame, None, None, None)
        else:
            made.forwarding._input(port, run, None, None, None, None)
    else:
        apply_control(made, step)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_plans_forward_and_count_exactly_as_walking_every_bridge(
        scenario: tuple[list[str], list[str], list[object]]) -> None:
    table_a, table_b, steps = scenario
    _side_by_side(table_a, table_b, steps)


def _side_by_side(table_a: list[str], table_b: list[str], steps: list[object]) -> None:
    """Run ``steps`` on a walking and a planning switchboard; compare as the module says."""
    clock = Clock()
    with board(clock, table_a, table_b, fast=False) as walked, \
            board(clock, table_a, table_b, fast=True) as planned:
        for step in steps:
            if isinstance(step, Advance):
                clock.now += step.seconds
            _apply(walked, step, clock)
            _apply(planned, step, clock)
            assert sent(planned) == sent(walked), step
            if isinstance(step, Look):
                assert observed(planned) == observed(walked)
        assert observed(planned) == observed(walked)


@settings(max_examples=150, deadline=None)
@given(agent_like())
def test_deferred_counts_ages_and_timeouts_match_walking(steps: list[object]) -> None:
    _side_by_side(AGENT_LIKE_A, AGENT_LIKE_B, steps)


def test_a_repeated_flow_is_forwarded_by_its_plan() -> None:
    clock = Clock()
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(src="10.0.0.1", dst="10.0.0.2")
                  / UDP() / Raw(b"x" * 20))
    reply = bytes(Ether(src=MACS[1], dst=MACS[0]) / IP(src="10.0.0.2", dst="10.0.0.1")
                  / UDP() / Raw(b"x" * 20))
    with board(clock, ["priority=0 actions=NORMAL"], ["priority=0 actions=NORMAL"],
               fast=True) as made:
        for _ in range(3):  # learn both MACs on both bridges
            _apply(made, Send("q1", reply, 1), clock)
            _apply(made, Send("p2", frame, 1), clock)
        before = made.plans.followed
        _apply(made, Send("p2", frame, 5), clock)
        assert made.plans.followed == before + 5
        q1 = made.ports["q1"]
        assert isinstance(q1, RecordingPort) and q1.sent[-5:] == [frame] * 5
        _apply(made, Send("p2", frame, 1, lone=True), clock)  # read alone: the short way
        assert made.plans.followed == before + 6
        assert q1.sent[-1] == frame and len(q1.sent) == 3 + 5 + 1


def test_the_control_service_reports_packets_still_pending_in_deferred_plans() -> None:
    """dump-flows and dump-ports count every packet (OpenFlow: n_packets per packet matched),
    also those that followed a plan whose replay was deferred."""
    clock = Clock()
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(src="10.0.0.1", dst="10.0.0.2")
                  / UDP() / Raw(b"x" * 20))
    reply = bytes(Ether(src=MACS[1], dst=MACS[0]) / IP(src="10.0.0.2", dst="10.0.0.1")
                  / UDP() / Raw(b"x" * 20))
    with board(clock, ["priority=0 actions=NORMAL"], ["priority=0 actions=NORMAL"],
               fast=True) as made:
        for _ in range(3):  # both MACs known on both bridges, plans made
            _apply(made, Send("q1", reply, 1), clock)
            _apply(made, Send("p2", frame, 1), clock)
        followed = made.plans.followed
        for _ in range(7):
            _apply(made, Send("p2", frame, 1), clock)
        assert made.plans.followed == followed + 7  # so these are pending, not walked
        service = Service(made)
        flows = service(m.DumpFlows("br-a"))
        assert isinstance(flows, list) and len(flows) == 1
        assert "n_packets=13," in str(flows[0])  # each of the 3 + 10 frames crossed br-a
        ports = service(m.DumpPorts("br-a", "pa"))
        assert isinstance(ports, list)
        assert ports[0]["tx_packets"] == 10  # p2's frames, all to br-b (MAC known there)
