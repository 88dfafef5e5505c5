"""vswitchd's flow snapshot (flow_snapshot.py): what a restart may put back, judged against
the dump-flows of the switch that wrote it, and what it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunnelnet.datapath import flow_snapshot, persist
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard

AGENT_FLOWS = [
    "cookie=0x5,table=0,priority=65535,dl_vlan=4095,actions=drop",
    "cookie=0x5,table=0,priority=2,in_port=1,actions=resubmit(,60)",
    "cookie=0x5,table=0,priority=0,actions=drop",
    "cookie=0x5,table=23,priority=0,actions=drop",
    "cookie=0x5,table=60,priority=3,actions=NORMAL",
    "cookie=0x5,table=20,priority=2,dl_vlan=3,dl_dst=fa:16:3e:00:00:01,"
    "actions=strip_vlan,output:2",
]
TRANSIENT = ["cookie=0x5,table=20,priority=1,hard_timeout=300,dl_vlan=3,"
             "dl_dst=fa:16:3e:00:00:09,actions=output:2",
             "cookie=0x5,table=20,priority=1,idle_timeout=60,dl_vlan=3,"
             "dl_dst=fa:16:3e:00:00:0a,actions=output:2"]


def _switch(tmp_path: Path, tags: tuple[int | None, int | None] = (None, 3)) -> Switchboard:
    board = Switchboard(EventLoop())
    board.add_bridge("br-int", "secure")
    board.add_bridge("br-x", "secure")
    board.add_port("br-int", "patch-a", PortKind.PATCH, ofport=1, tag=tags[0],
                   options={"peer": "patch-a2"})
    board.add_port("br-int", "patch-b", PortKind.PATCH, ofport=2, tag=tags[1],
                   options={"peer": "patch-b2"}, external_ids={"iface-id": "vm-b"})
    board.add_port("br-x", "patch-a2", PortKind.PATCH, options={"peer": "patch-a"})
    board.add_port("br-x", "patch-b2", PortKind.PATCH, options={"peer": "patch-b"})
    return board


def _written(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A switch with the agent's flows and transient ones, saved; and its dump-flows."""
    board = _switch(tmp_path)
    bridge = board.bridge("br-int").bridge
    bridge.add_flows(AGENT_FLOWS + TRANSIENT)
    dumped = bridge.dump_flows(stats=False)
    conf, flows = tmp_path / persist.CONFIG_NAME, tmp_path / flow_snapshot.SNAPSHOT_NAME
    persist.save(board, conf)
    flow_snapshot.save(board, flows)
    board.close()
    return conf, flows, dumped


def test_a_restart_puts_back_what_was_installed_but_learned_and_timed_flows(
        tmp_path: Path) -> None:
    conf, flows, before = _written(tmp_path)
    board = Switchboard(EventLoop())
    persist.restore(board, conf)
    assert flow_snapshot.restore(board, flows) == len(AGENT_FLOWS)
    after = board.bridge("br-int").bridge.dump_flows(stats=False)
    # judged against the writer's own dump-flows: the same lines, cookies included
    assert after == [line for line in before if "timeout=" not in line]
    assert board.bridge("br-x").bridge.dump_flows() == []
    board.close()


def test_a_retagged_port_restores_no_flow_on_any_bridge(tmp_path: Path) -> None:
    """Its local VLAN may now belong to another network than the snapshot's tunnel flows
    map it to: nothing goes back, every bridge stays fail-secure and empty."""
    _, flows, _ = _written(tmp_path)
    board = _switch(tmp_path, tags=(None, 4))
    assert flow_snapshot.restore(board, flows) == 0
    assert all(state.bridge.dump_flows() == [] for state in board.bridges.values())
    board.close()


@pytest.mark.parametrize("change", ["new_port", "other_iface_id"])
def test_a_port_the_snapshot_did_not_know_restores_no_flow(tmp_path: Path,
                                                           change: str) -> None:
    _, flows, _ = _written(tmp_path)
    board = _switch(tmp_path)
    if change == "new_port":
        board.add_port("br-int", "patch-c", PortKind.PATCH, tag=3, options={"peer": "x"})
    else:
        board.set_port("br-int", "patch-b", external_ids={"iface-id": "another-vm"})
    assert flow_snapshot.restore(board, flows) == 0
    assert board.bridge("br-int").bridge.dump_flows() == []
    board.close()


def test_flows_naming_a_port_that_did_not_come_back_are_left_out(tmp_path: Path) -> None:
    conf, flows, before = _written(tmp_path)
    board = Switchboard(EventLoop())
    persist.restore(board, conf)
    board.del_port("br-int", "patch-b")  # ofport 2 did not come back
    flow_snapshot.restore(board, flows)
    after = board.bridge("br-int").bridge.dump_flows(stats=False)
    assert after == [line for line in before
                     if "timeout=" not in line and "output:2" not in line]
    board.close()


def test_a_damaged_or_foreign_snapshot_restores_nothing(tmp_path: Path) -> None:
    conf, flows, _ = _written(tmp_path)
    bad_line = json.loads(flows.read_text())
    bad_line["bridges"][0]["flows"].append("table=0,actions=no_such_action")  # br-int
    for text in ("{half", json.dumps({"version": 99}), json.dumps({"version": 1}),
                 json.dumps(bad_line)):
        flows.write_text(text)
        board = Switchboard(EventLoop())
        persist.restore(board, conf)
        assert flow_snapshot.restore(board, flows) == 0
        assert board.bridge("br-int").bridge.dump_flows() == []
        board.close()


def test_port_numbers_named_by_a_flow() -> None:
    assert flow_snapshot.ports_named(
        "table=0,in_port=7,actions=output:3,resubmit(9,1),enqueue:4:1") == {7, 3, 9, 4}
    assert flow_snapshot.ports_named("actions=load:0x1a->NXM_OF_IN_PORT[],NORMAL") == {26}
    assert flow_snapshot.ports_named("table=22,dl_vlan=3,actions=set_tunnel:0x64") == set()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_changes_are_written_at_most_once_per_interval_and_the_last_always(
        tmp_path: Path) -> None:
    clock = _Clock()
    loop = EventLoop(clock)
    board = _switch(tmp_path)
    path = tmp_path / flow_snapshot.SNAPSHOT_NAME
    writer = flow_snapshot.SnapshotWriter(board, loop, path, interval=1.0)
    writer.changed()
    loop.run_once()
    assert writer.writes == 1 and json.loads(path.read_text())["bridges"][0]["flows"] == []
    board.bridge("br-int").bridge.add_flows(AGENT_FLOWS[:1])
    writer.changed()
    writer.changed()
    clock.now += 0.5
    loop.run_once()
    assert writer.writes == 1  # not yet: a second has not passed since the last write
    clock.now += 0.6
    loop.run_once()
    assert writer.writes == 2
    assert len(json.loads(path.read_text())["bridges"][0]["flows"]) == 1
    board.close()


def test_a_snapshot_is_of_the_configuration_only_with_the_same_port_records(
        tmp_path: Path) -> None:
    """What decides whether a restart leaves a killed daemon's kernel plans running until
    its flows are back (daemon.run): the snapshot must be of the very ports recorded."""
    conf, flows, _ = _written(tmp_path)
    assert flow_snapshot.of_configuration(flows, conf)
    board = _switch(tmp_path, tags=(None, 4))  # a port retagged after the last flow write
    persist.save(board, conf)
    board.close()
    assert not flow_snapshot.of_configuration(flows, conf)
    assert not flow_snapshot.of_configuration(tmp_path / "missing.json", conf)
