"""vswitchd's configuration survives a restart as Open vSwitch's does (bridges, ports, tags,
external_ids; never flows), and a port whose interface is gone is skipped, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

from tunnelnet.datapath import persist
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard


def test_bridges_and_patch_ports_come_back_with_numbers_tags_and_ids(tmp_path: Path) -> None:
    path = tmp_path / persist.CONFIG_NAME
    first = Switchboard(EventLoop())
    first.add_bridge("br-int", "secure")
    first.add_bridge("br-tun", "secure")
    first.add_port("br-int", "patch-tun", PortKind.PATCH, ofport=7, tag=None,
                   options={"peer": "patch-int"}, external_ids={"iface-id": "x"})
    first.add_port("br-tun", "patch-int", PortKind.PATCH, options={"peer": "patch-tun"})
    first.bridge("br-int").bridge.add_flow("priority=5,actions=drop")
    persist.save(first, path)
    first.close()

    second = Switchboard(EventLoop())
    assert persist.restore(second, path) == 2
    assert second.bridge("br-int").fail_mode == "secure"
    port = second.ports["patch-tun"]
    assert port.ofport == 7 and port.bridge == "br-int"
    assert second.bridge("br-int").external_ids["patch-tun"] == {"iface-id": "x"}
    # flows are not configuration: a fail-secure bridge starts with none (as in OVS)
    assert second.bridge("br-int").bridge.dump_flows() == []
    second.close()


def test_a_port_whose_interface_is_gone_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / persist.CONFIG_NAME
    path.write_text(json.dumps({"version": persist.VERSION, "bridges": [
        {"name": "br0", "fail_mode": "standalone", "ports": [
            {"name": "no-such-if0", "type": "system", "ofport": 1, "tag": 5,
             "options": {}, "external_ids": {}}]}]}))
    board = Switchboard(EventLoop())
    assert persist.restore(board, path) == 0
    assert list(board.bridges) == ["br0"] and board.ports == {}
    board.close()


def test_unreadable_or_foreign_configuration_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / persist.CONFIG_NAME
    path.write_text("{not json")
    board = Switchboard(EventLoop())
    assert persist.restore(board, path) == 0
    path.write_text(json.dumps({"version": 99, "bridges": [{"name": "br0"}]}))
    assert persist.restore(board, path) == 0
    assert board.bridges == {}
    board.close()
