"""What one port's learning changes drops only the plans that depended on it (issue 21).

A VM sending frames with random source MACs makes NORMAL learn a MAC per frame. Each used to
bump the bridge's version and so drop every plan through the bridge: another tenant's known
flows left the kernel fast path and queued in Python behind the flood, their ping p99 going
from 0.2 ms to tens of ms. Through a real Switchboard with recording ports: another VLAN's
flow keeps following its plan through such a flood (it walks no more), while a plan of the
flooding VLAN that flooded to a MAC now learned is dropped (its next frame walks and goes
only where the MAC was learned), as the walk would have it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard

VICTIM, VICTIM_PEER = "02:00:00:00:06:01", "02:00:00:00:06:02"
ATTACKER, KNOWN = "02:00:00:00:05:01", "02:00:00:00:05:02"


@pytest.fixture
def board() -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    made.add_bridge("br-int")
    for name, tag in (("attacker", 5), ("peer", 5), ("other", 5), ("victim", 6),
                      ("victim-peer", 6)):
        made.add_port("br-int", name, PortKind.SYSTEM, tag=tag)
    made.forwarding.walk_meter = None  # every flood frame walks and learns
    yield made
    made.close()
    loop.close()


def _ping(src: str, dst: str, seq: int) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / ICMP(id=7, seq=seq) / (b"x" * 56))  # as ping sends


def _receive(board: Switchboard, port: str, frames: list[bytes]) -> None:
    for frame in frames:  # one at a time, as a quiet port's socket delivers them
        board.forwarding.reader(board.ports[port], lambda f=frame: [(f, None)])()
    board.tunnels.flush()


def _sent(board: Switchboard, port: str) -> list[bytes]:
    recorded = board.ports[port]
    assert isinstance(recorded, RecordingPort)
    return recorded.sent


def test_another_vlans_flow_keeps_its_plan_through_a_mac_flood(board: Switchboard) -> None:
    _receive(board, "victim-peer", [_ping(VICTIM_PEER, VICTIM, 0)])  # both MACs known
    _receive(board, "victim", [_ping(VICTIM, VICTIM_PEER, 1), _ping(VICTIM, VICTIM_PEER, 2)])
    plans = board.forwarding.plans
    walked, followed = plans.walked, plans.followed
    _receive(board, "victim", [_ping(VICTIM, VICTIM_PEER, 3)])
    assert (plans.walked, plans.followed) == (walked, followed + 1)  # the plan is in use

    flood = [_ping(f"02:66:00:00:{i // 256:02x}:{i % 256:02x}", "02:77:00:00:00:01", i)
             for i in range(200)]
    _receive(board, "attacker", flood)
    learned = board.bridges["br-int"].bridge.mac_table.per_vlan()
    assert learned[5] >= 200  # the flood was walked and learned, one new MAC a frame

    walked = plans.walked
    _receive(board, "victim", [_ping(VICTIM, VICTIM_PEER, 4)])
    assert plans.walked == walked  # followed its plan: the flood's MACs are not its own
    assert _sent(board, "victim-peer")[-1] == _ping(VICTIM, VICTIM_PEER, 4)
    assert not any(frame in _sent(board, "victim-peer") for frame in flood)


def test_a_plan_that_flooded_to_a_mac_goes_when_that_mac_is_learned(board: Switchboard
                                                                    ) -> None:
    to_known = [_ping(ATTACKER, KNOWN, seq) for seq in range(3)]
    _receive(board, "attacker", to_known)  # KNOWN is unknown yet: flooded, planned
    assert _sent(board, "peer") == to_known and _sent(board, "other") == to_known
    _receive(board, "peer", [_ping(KNOWN, ATTACKER, 9)])  # now learned, on "peer"
    walked = board.forwarding.plans.walked
    _receive(board, "attacker", [_ping(ATTACKER, KNOWN, 3)])
    assert board.forwarding.plans.walked == walked + 1  # the flooding plan no longer held
    assert _sent(board, "peer")[-1] == _ping(ATTACKER, KNOWN, 3)
    assert _sent(board, "other") == to_known  # no longer flooded there
