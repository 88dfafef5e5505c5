"""Watch fan-out: several agents follow the stream while ports are created; every watcher gets
every port event exactly once and in order. bench/test_watch_fanout.py runs 200 watchers and
100 creates and reports the rates."""

from __future__ import annotations

from pathlib import Path

from support.controller import ServerProcess
from support.load import watch_while_creating

WATCHERS, WRITES = 5, 20


def test_every_watcher_gets_every_port_event_once_in_order(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "fan.db") as server, server.client() as admin:
        net = admin.create("network", name="fan")
        admin.create("subnet", network_id=net["id"], cidr="10.129.0.0/16")
        start = admin.list_with_revision("port")[1]
        fan = watch_while_creating(server, net["id"], start, WATCHERS, WRITES)
        ports = admin.list("port")
    assert len(ports) == WRITES
    assert len(fan.seen) == WATCHERS
    for seen in fan.seen:
        assert len(seen) == WRITES and seen == sorted(set(seen))
    assert fan.seen[0] == fan.seen[-1]  # the same events, not just as many
