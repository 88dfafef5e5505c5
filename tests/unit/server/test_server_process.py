"""The server as a process and as a thread: start, admin token default, clean stop."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from support.controller import ServerProcess
from tunnelnet.client import Client
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.runner import BackgroundServer


def test_without_an_admin_token_one_is_made_private_and_kept_across_restarts(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    with ServerProcess(db, env={"TUNNELNET_ADMIN_TOKEN": ""}) as proc:
        token_file = Path(f"{db}.admin-token")
        mode = stat.S_IMODE(os.stat(token_file).st_mode)
        assert mode == 0o600
        token = token_file.read_text().strip()
        with Client(proc.url, token) as admin:
            admin.create("network", name="made-with-generated-token")
        proc.restart()
        assert token_file.read_text().strip() == token
        with Client(proc.url, token) as admin:
            assert [n["name"] for n in admin.list("network")] == ["made-with-generated-token"]


def test_sigterm_stops_the_server_cleanly_with_status_0(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "state.db")
    proc.start()
    assert proc.stop() == 0


def test_a_server_in_a_thread_serves_the_same_api(tmp_path: Path) -> None:
    config = ServerConfig(db=str(tmp_path / "t.db"), port=0, admin_token="adm")
    with BackgroundServer(config) as server, Client(server.url, "adm") as admin:
        net = admin.create("network", name="threaded")
        assert admin.show("network", net["id"])["mtu"] == 1450


def test_a_port_already_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from tunnelnet.server.config import ConfigError

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        config = ServerConfig(db=str(tmp_path / "t.db"), port=port, admin_token="adm")
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            BackgroundServer(config)
    finally:
        holder.close()


def test_stopping_with_open_watch_streams_ends_them_and_exits_cleanly(tmp_path: Path) -> None:
    import threading

    proc = ServerProcess(tmp_path / "state.db")
    proc.start()
    ended: list[str] = []
    opened = threading.Event()

    def follow() -> None:
        with proc.client() as client:
            for event in client.watch():  # no timeout: it would last forever
                opened.set()
                del event
        ended.append("clean end")

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    assert opened.wait(timeout=10)
    # without ending the streams, uvicorn waits for them and the stop turns into a SIGKILL
    assert proc.stop() == 0
    watcher.join(timeout=10)
    assert ended == ["clean end"]
