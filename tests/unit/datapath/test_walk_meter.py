"""The walk meter: each ingress may start a bounded number of table walks (new flows) a
second, so one port's flood of new flows cannot take the datapath from the others. Proven on
the token bucket with a clock we move, and through a real Switchboard's receive path with
recording ports: the flood is cut at the burst and counted, another port's frames and the
flooding port's already-known flow still go through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.datapath.walk_meter import WalkMeter

BCAST = "ff:ff:ff:ff:ff:ff"


def test_a_burst_then_the_rate_and_never_more_than_the_burst_saved() -> None:
    meter = WalkMeter(rate=10.0, burst=3.0)
    assert [meter.allow("vm1", None, 0.0) for _ in range(4)] == [True, True, True, False]
    assert meter.allow("vm1", None, 0.05) is False  # half a token
    assert meter.allow("vm1", None, 0.1) is True  # 0.1 s at 10/s: one more
    # an hour idle saves no more than the burst
    assert sum(meter.allow("vm1", None, 3600.0) for _ in range(10)) == 3
    assert meter.refused == 1 + 1 + 7


def test_each_port_and_each_network_key_of_a_tunnel_has_its_own_bucket() -> None:
    meter = WalkMeter(rate=1.0, burst=1.0)
    assert meter.allow("vxlan-c0000202", 0x3E9, 0.0)
    assert not meter.allow("vxlan-c0000202", 0x3E9, 0.0)
    assert meter.allow("vxlan-c0000202", 0x7D2, 0.0)  # another tenant through the same peer
    assert meter.allow("vm1", None, 0.0)
    meter.forget("vxlan-c0000202")
    assert meter.allow("vxlan-c0000202", 0x3E9, 0.0)  # a new port starts full


def test_a_bad_meter_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        WalkMeter(rate=0.0)


@pytest.fixture
def board() -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    made.add_bridge("br-int")
    for name, tag in (("attacker", 5), ("peer", 5), ("victim", 6), ("victim-peer", 6)):
        made.add_port("br-int", name, PortKind.SYSTEM, tag=tag)
    made.forwarding.walk_meter = WalkMeter(rate=1e-9, burst=5.0)  # no refill within a test
    yield made
    made.close()
    loop.close()


def _frame(src: str, dst: str = BCAST) -> bytes:
    return bytes(Ether(src=src, dst=dst, type=0x88B5) / (b"x" * 46))


def _receive(board: Switchboard, port: str, frames: list[bytes]) -> None:
    """The port's socket delivered ``frames`` in one burst (the metered path)."""
    board.forwarding.reader(board.ports[port], lambda: [(f, None) for f in frames])()
    board.tunnels.flush()


def _sent(board: Switchboard, port: str) -> list[bytes]:
    recorded = board.ports[port]
    assert isinstance(recorded, RecordingPort)
    return recorded.sent


def test_a_flood_of_new_flows_is_cut_at_the_burst_and_counted(board: Switchboard) -> None:
    _receive(board, "attacker", [_frame(f"02:66:00:00:00:{i:02x}") for i in range(50)])
    assert len(_sent(board, "peer")) == 5
    assert board.bridge("br-int").drops["walk_limit"] == 45
    assert board.ports["attacker"].stats.rx_dropped == 45
    # the other tenant's port walks on its own tokens
    _receive(board, "victim", [_frame("02:00:00:00:06:01")])
    assert len(_sent(board, "victim-peer")) == 1
    assert _sent(board, "attacker") == [] and len(_sent(board, "victim")) == 0


def test_the_flooding_ports_known_flow_goes_on_without_tokens(board: Switchboard) -> None:
    bridge = board.bridge("br-int").bridge
    # a ping as on the wire (padded to 60 bytes): plans are made for IP flows
    known = bytes(Ether(src="02:00:00:00:05:01", dst="02:00:00:00:05:02")
                  / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / (b"p" * 18))
    _receive(board, "peer", [_frame("02:00:00:00:05:02")])  # the peer's MAC is learned
    _receive(board, "attacker", [known])  # learns the attacker's MAC (not cached: it changed)
    _receive(board, "attacker", [known])  # cached and planned
    bridge.mac_table.limit_per_vlan = len(bridge.mac_table)  # VLAN full: the flood learns none
    _receive(board, "attacker", [_frame(f"02:66:00:00:00:{i:02x}") for i in range(50)])
    before = len(_sent(board, "peer"))
    _receive(board, "attacker", [known])
    assert len(_sent(board, "peer")) == before + 1


def test_a_known_flow_without_a_plan_is_never_metered(board: Switchboard) -> None:
    # frames of no IP kind get no plan, but once cached they cost no walk: never held back
    lldp_like = _frame("02:00:00:00:05:01", "02:00:00:00:05:02")
    _receive(board, "peer", [_frame("02:00:00:00:05:02")])
    _receive(board, "attacker", [lldp_like] * 2)  # learns, then cached
    for _ in range(20):  # 4x the burst, one frame at a time, as a steady stream would come
        _receive(board, "attacker", [lldp_like])
    assert board.bridge("br-int").drops.get("walk_limit", 0) == 0
    assert len(_sent(board, "peer")) == 2 + 20
