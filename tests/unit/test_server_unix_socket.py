"""The controller also serves on a unix socket, and the client reaches it by ``unix:PATH``
(the lab's agents live in other network namespaces but share the file system)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunnelnet.client.http import Client, ClientError


def test_client_talks_to_server_over_unix_socket_and_socket_is_removed_on_exit(
        tmp_path: Path) -> None:
    sock = tmp_path / "server.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelnet", "server", "--db", str(tmp_path / "db.sqlite"),
         "--listen", "127.0.0.1:0", "--unix", str(sock)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"TUNNELNET_ADMIN_TOKEN": "s3cret", "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "server socket never appeared"
            time.sleep(0.05)
        with Client(f"unix:{sock}", "s3cret") as api:
            created = api.create("network", name="over-unix")
            assert [n["name"] for n in api.list("network")] == ["over-unix"]
            assert created["id"]
        with Client(f"unix:{sock}", "wrong-token") as intruder, \
                pytest.raises(ClientError) as refused:
            intruder.list("network")
        assert refused.value.status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not sock.exists()
