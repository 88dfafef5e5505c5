"""The watch stream through the real server: order, resume after reconnect, resync, restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.controller import ServerProcess
from tunnelnet.api import WatchEvent
from tunnelnet.client import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("watch")
    config = directory / "server.toml"
    # a short bookmark interval keeps idle waits short; a tiny retention makes compaction
    # reachable; compaction runs every 12 liveness ticks (agent_down_time / 3)
    config.write_text("watch_bookmark_interval = 0.3\nevent_retention = 5\nagent_down_time = 0.6\n")
    with ServerProcess(directory / "state.db", config=config) as proc:
        yield proc


def _events(client: Client, since: int, timeout: float = 1.0) -> list[WatchEvent]:
    return [e for e in client.watch(since=since, timeout=timeout) if e.type == "event"]


def test_events_arrive_in_revision_order_with_the_object(admin: Client) -> None:
    start = admin.list_with_revision("network")[1]
    net = admin.create("network", name="w1")
    admin.update("network", net["id"], name="w2")
    admin.delete("network", net["id"])
    events = _events(admin, start)
    mine = [e for e in events if e.object and e.object.get("id") == net["id"]]
    assert [(e.resource, e.action) for e in mine] == [
        ("network", "create"), ("network", "update"), ("network", "delete")
    ]  # fmt: skip
    assert [e.object["name"] for e in mine if e.object] == ["w1", "w2", "w2"]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)


def test_a_live_stream_delivers_changes_made_while_it_is_open(server: ServerProcess) -> None:
    import threading

    with server.client() as watcher, server.client() as writer:
        start = writer.list_with_revision("port")[1]
        made: list[str] = []

        def write() -> None:
            made.append(writer.create("network", name="live")["id"])

        timer = threading.Timer(0.3, write)
        timer.start()
        got = None
        for event in watcher.watch(since=start, timeout=5.0):
            if event.type == "event" and event.resource == "network":
                got = event
                break
        timer.join(timeout=5)
    assert got is not None and got.object is not None
    assert got.object["id"] == made[0]


def test_reconnecting_with_the_last_revision_misses_nothing_and_repeats_nothing(
    admin: Client,
) -> None:
    start = admin.list_with_revision("network")[1]
    first = admin.create("network", name="before-drop")
    seen = _events(admin, start, timeout=0.5)
    last = seen[-1].revision
    # the agent is disconnected while these happen
    second = admin.create("network", name="while-away")
    admin.delete("network", first["id"])
    after = _events(admin, last, timeout=0.5)
    assert [(e.action, e.object["id"]) for e in after if e.object] == [
        ("create", second["id"]), ("delete", first["id"])
    ]  # fmt: skip
    assert all(e.revision > last for e in after)


def test_a_compacted_revision_gets_a_resync(admin: Client) -> None:
    import time

    start = admin.list_with_revision("network")[1]
    for i in range(12):
        admin.create("network", name=f"churn{i}")
    deadline = time.monotonic() + 20
    answer: list[WatchEvent] = []
    while time.monotonic() < deadline:
        answer = list(admin.watch(since=start, timeout=0.2))
        if answer and answer[0].type == "resync":
            break
        time.sleep(0.3)
    assert answer and answer[0].type == "resync"
    assert answer[0].revision >= start + 12
    assert len(answer) == 1  # the stream ends after a resync


def test_a_revision_from_the_future_gets_a_resync(admin: Client) -> None:
    answer = list(admin.watch(since=10**12, timeout=1.0))
    assert [e.type for e in answer] == ["resync"]


def test_watch_resumes_across_a_server_restart(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db") as proc:
        with proc.client() as client:
            before = client.create("network", name="old")
            revision = client.list_with_revision("network")[1]
            proc.restart()
        with proc.client() as client:
            after = client.create("network", name="new")
            events = _events(client, revision, timeout=0.5)
            assert [e.object["id"] for e in events if e.object] == [after["id"]]
            assert after["provider:segmentation_id"] != before["provider:segmentation_id"]


def test_snapshot_then_long_poll_is_list_and_watch_without_a_gap(
    admin: Client, agent: Client
) -> None:
    snap = agent.snapshot()
    assert snap.revision == admin.list_with_revision("network")[1]
    net = admin.create("network", name="after-snapshot")
    events, revision = agent.events(snap.revision, timeout=5.0)
    assert [(e.resource, e.action, e.object["id"]) for e in events if e.object] == [
        ("network", "create", net["id"])
    ]
    assert revision == events[-1].revision
    # nothing new: the poll waits and returns empty at its timeout, revision unchanged
    again, same = agent.events(revision, timeout=0.3)
    assert (again, same) == ([], revision)


def test_long_poll_returns_as_soon_as_a_change_happens(server: ServerProcess) -> None:
    import threading
    import time

    with server.client() as poller, server.client() as writer:
        start = writer.list_with_revision("network")[1]
        timer = threading.Timer(0.3, lambda: writer.create("network", name="wakes-poll"))
        began = time.monotonic()
        timer.start()
        events, _ = poller.events(start, timeout=20.0)
        waited = time.monotonic() - began
        timer.join(timeout=5)
    assert [e.object["name"] for e in events if e.object] == ["wakes-poll"]
    assert waited < 15.0  # woken by the change, not by the 20 s timeout


def test_long_poll_from_a_lost_revision_is_a_410_resync(agent: Client) -> None:
    from tunnelnet.client import ResyncRequired

    with pytest.raises(ResyncRequired) as err:
        agent.events(10**12, timeout=0.1)
    assert (err.value.status, err.value.error_type) == (410, "ResyncRequired")
