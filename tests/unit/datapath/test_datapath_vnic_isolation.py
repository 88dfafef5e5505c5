"""A vNIC (a port with an iface-id) plugged on a fail-secure bridge without a tag waits on the
dead VLAN 4095 until its agent tags it, as os-vif's isolate_vif plugs one: it hears no tenant
and no tenant hears it, even where the tables forward with NORMAL. Frames are judged by
scapy at the in-memory system ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard

BROADCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture
def board() -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    yield made
    made.close()
    loop.close()


def _tag(board: Switchboard, bridge: str, port: str) -> int | None:
    return board.bridge(bridge).bridge.port(port).tag


def _broadcast(src: str) -> bytes:
    return bytes(Ether(src=src, dst=BROADCAST) / IP(src="10.0.0.9", dst="10.0.0.255")
                 / UDP(sport=9, dport=9) / b"tenant")


def _received(board: Switchboard, name: str) -> list[Ether]:
    port = board.ports[name]
    assert isinstance(port, RecordingPort)
    return [Ether(frame) for frame in port.sent]


def _int_bridge(board: Switchboard, fail_mode: str = "secure") -> None:
    board.add_bridge("br-int", fail_mode)
    # what the agent leaves for bound ports: NORMAL switching within each local VLAN
    board.bridge("br-int").bridge.add_flows(["priority=0,actions=NORMAL"])
    board.add_port("br-int", "vm-red", PortKind.SYSTEM, tag=3,
                   external_ids={"iface-id": "red-port"})
    board.add_port("br-int", "vm-blue", PortKind.SYSTEM, tag=4,
                   external_ids={"iface-id": "blue-port"})


def test_an_untagged_vnic_is_plugged_on_the_dead_vlan_and_hears_no_tenant(
        board: Switchboard) -> None:
    _int_bridge(board)
    board.add_port("br-int", "rogue", PortKind.SYSTEM, external_ids={"iface-id": "whoever"})
    assert _tag(board, "br-int", "rogue") == 4095
    for vm in ("vm-red", "vm-blue"):
        board.inject(vm, _broadcast(f"02:00:00:00:00:0{3 if vm == 'vm-red' else 4}"))
    assert _received(board, "rogue") == []
    board.inject("rogue", _broadcast("02:00:00:00:66:66"))
    assert _received(board, "vm-red") == [] and _received(board, "vm-blue") == []


def test_a_port_without_iface_id_or_on_a_standalone_bridge_is_a_trunk_as_in_ovs(
        board: Switchboard) -> None:
    _int_bridge(board)
    board.add_port("br-int", "uplink", PortKind.SYSTEM)
    assert _tag(board, "br-int", "uplink") is None
    board.add_bridge("br-lan", "standalone")
    board.add_port("br-lan", "lan-vm", PortKind.SYSTEM, external_ids={"iface-id": "x"})
    assert _tag(board, "br-lan", "lan-vm") is None
    board.inject("vm-red", _broadcast("02:00:00:00:00:03"))
    heard = _received(board, "uplink")
    assert len(heard) == 1 and heard[0].vlan == 3  # the trunk carries red's VLAN, tagged


def test_an_iface_id_given_later_or_a_cleared_tag_leaves_a_vnic_on_the_dead_vlan(
        board: Switchboard) -> None:
    _int_bridge(board)
    board.add_port("br-int", "late", PortKind.SYSTEM)
    board.set_port("br-int", "late", external_ids={"iface-id": "now-a-vnic"})
    assert _tag(board, "br-int", "late") == 4095
    board.set_port("br-int", "vm-red", clear_tag=True)
    assert _tag(board, "br-int", "vm-red") == 4095
    board.set_port("br-int", "late", tag=3)  # the agent binds it: its tag is taken as given
    assert _tag(board, "br-int", "late") == 3
