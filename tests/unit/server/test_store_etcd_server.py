"""`tunnelnet server --store etcd://...`: two controller processes on one etcd serve one cloud,
and an etcd that is not there is one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from support.etcd import EtcdServer, etcd_server, free_port, unique_prefix
from tunnelnet.api import WatchEvent

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here


def _server(directory: Path, store: str) -> ServerProcess:
    # --db is what ServerProcess always passes; --store (here via its variable) wins over it
    directory.mkdir()
    return ServerProcess(directory / "unused.db", env={"TUNNELNET_STORE": store})


@pytest.fixture
def two(etcd_server: EtcdServer, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    url = etcd_server.url(unique_prefix("cloud"))
    with _server(tmp_path / "a", url) as first, _server(tmp_path / "b", url) as second:
        yield first, second


def test_two_controllers_on_one_etcd_serve_the_same_cloud(
    two: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    first, second = two
    with first.client() as a, second.client() as b:
        since = b.list_with_revision("network")[1]
        received: list[WatchEvent] = []

        def follow() -> None:
            for event in b.watch(since=since, timeout=10):
                if event.type == "event":
                    received.append(event)
                    return

        watcher = threading.Thread(target=follow)
        watcher.start()
        net = a.create("network", name="made-on-a")
        a.create("subnet", network_id=net["id"], cidr="10.9.0.0/29", ip_version=4)
        watcher.join(15)
        # the event stream of controller b delivers a write made through controller a
        assert [(e.resource, e.action) for e in received] == [("network", "create")]
        assert b.show("network", net["id"])["name"] == "made-on-a"
        # addresses are claimed once across both controllers
        ports = [c.create("port", network_id=net["id"]) for c in (a, b, a, b, a)]
        ips = [p["fixed_ips"][0]["ip_address"] for p in ports]
        assert len(set(ips)) == len(ips) == 5
        assert not (tmp_path / "a" / "unused.db").exists()  # nothing went to SQLite


def _run_server(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELNET_")} | env
    argv = [sys.executable, "-m", "tunnelnet", "server", "--listen", "127.0.0.1:0", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=full)


def test_an_unreachable_etcd_is_one_line_and_exit_status_1() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    done = _run_server("--store", f"etcd://{endpoint}", env={"TUNNELNET_ADMIN_TOKEN": "adm"})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith(f"tunnelnet: error: cannot use etcd at {endpoint}")


def test_an_etcd_store_needs_an_admin_token_shared_by_the_controllers() -> None:
    done = _run_server("--store", "etcd://127.0.0.1:1", env={})
    assert done.returncode == 1
    assert "admin token" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_store_url_on_the_command_line_names_the_bad_part() -> None:
    done = _run_server("--store", "etcd://h:2379,h2:70000", env={"TUNNELNET_ADMIN_TOKEN": "a"})
    assert done.returncode == 1
    assert "bad etcd port '70000'" in done.stderr and "Traceback" not in done.stderr


def test_requests_get_a_503_while_etcd_is_away_and_succeed_once_it_is_back(
    tmp_path: Path,
) -> None:
    (tmp_path / "etcd").mkdir()
    with EtcdServer(tmp_path / "etcd") as etcd, \
            _server(tmp_path / "ctl", etcd.url(unique_prefix("away"))) as ctl:
        with ctl.client() as admin:
            admin.create("network", name="before")
        etcd.stop()
        with httpx.Client(base_url=ctl.url, timeout=30) as http:
            answer = http.get("/v2.0/networks", headers={"X-Auth-Token": ADMIN_TOKEN})
            assert answer.status_code == 503, answer.text
            assert answer.json()["NeutronError"]["type"] == "ServiceUnavailable"
            etcd.restart()
            answer = http.get("/v2.0/networks", headers={"X-Auth-Token": ADMIN_TOKEN})
            assert answer.status_code == 200, answer.text
            assert [n["name"] for n in answer.json()["networks"]] == ["before"]
