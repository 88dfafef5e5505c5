"""The learning caps set as Open vSwitch users set them (`vsctl set bridge BR
other_config:mac-table-size=N ...`), shown by `ofctl fdb-show` and counted in `dump-drops`,
kept over a restart; a bad setting changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether

from support.vswitchd import RecordingPort, recording_ports
from tunnelnet.datapath import messages as m
from tunnelnet.datapath import persist
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard


@pytest.fixture
def board() -> Iterator[Switchboard]:
    loop = EventLoop()
    made = Switchboard(loop, port_factory=recording_ports)
    made.add_bridge("br-int")
    made.add_port("br-int", "vm1", PortKind.SYSTEM, tag=5)
    made.add_port("br-int", "vm2", PortKind.SYSTEM, tag=5)
    made.add_port("br-int", "vm3", PortKind.SYSTEM, tag=6)
    yield made
    made.close()
    loop.close()


def _flood(board: Switchboard, count: int) -> None:
    for i in range(count):
        board.inject("vm1", bytes(Ether(src=f"02:66:00:00:00:{i:02x}", dst="ff:ff:ff:ff:ff:ff",
                                        type=0x88B5) / (b"x" * 46)))


def test_mac_table_size_caps_each_vlan_and_fdb_show_counts_what_was_refused(
        board: Switchboard) -> None:
    service = Service(board)
    service(m.SetBridge("br-int", {"mac-table-size": "4", "mac-aging-time": "60"}))
    _flood(board, 10)
    fdb = service(m.FdbShow("br-int"))
    assert fdb["other_config"]["mac-table-size"] == "4"
    assert fdb["other_config"]["mac-aging-time"] == "60"
    assert fdb["macs_per_vlan"] == {"5": 4}
    assert fdb["mac_limit_hits"] == 6
    assert len(fdb["fdb"]) == 1 + 4  # header and the four learned
    refused = service(m.DumpDrops("br-int"))["learning_refused"]
    assert refused == {"br-int": {"mac_limit": 6, "learn_limit": 0}}
    # every flooded frame still reached its own VLAN's other port, none the other VLAN's
    vm2, vm3 = board.ports["vm2"], board.ports["vm3"]
    assert isinstance(vm2, RecordingPort) and isinstance(vm3, RecordingPort)
    assert (len(vm2.sent), len(vm3.sent)) == (10, 0)


@pytest.mark.parametrize("other_config", [
    {"mac-table-size": "0"}, {"mac-table-size": "many"}, {"mac-aging-time": "nan"},
    {"mac-table-size": "8", "flood-me": "1"}, {"learn-flow-limit": "-1"},
])
def test_a_bad_setting_is_refused_and_changes_nothing(board: Switchboard,
                                                     other_config: dict[str, str]) -> None:
    service = Service(board)
    before = service(m.FdbShow("br-int"))["other_config"]
    with pytest.raises(DatapathError, match="other_config:"):
        service(m.SetBridge("br-int", other_config))
    assert service(m.FdbShow("br-int"))["other_config"] == before


def test_an_unknown_bridge_is_refused(board: Switchboard) -> None:
    with pytest.raises(DatapathError):
        Service(board)(m.SetBridge("br-nope", {"mac-table-size": "8"}))


def test_the_caps_survive_a_restart(board: Switchboard, tmp_path: Path) -> None:
    path = tmp_path / persist.CONFIG_NAME
    Service(board, path)(m.SetBridge("br-int", {"learn-flow-limit": "7",
                                                "mac-table-size": "9"}))
    second = Switchboard(EventLoop())
    persist.restore(second, path)
    bridge = second.bridge("br-int").bridge
    assert (bridge.learn_limit_per_vlan, bridge.mac_table.limit_per_vlan) == (7, 9)
    second.close()
