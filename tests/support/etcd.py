"""A real single-member etcd for tests: its own data dir, free loopback ports, bounded waits.

One per test session is enough: every store under test gets a prefix of its own
(`unique_prefix()`), exactly as two clouds could share one etcd cluster.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from support.tools import require_tool

# the controller's bulk creates write several keys per item in one etcd Txn; etcd's default
# of 128 operations per Txn would cap a bulk create at a few dozen ports (docs/deploy.md)
MAX_TXN_OPS = 10_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_prefix(name: str = "test") -> str:
    return f"/{name}-{uuid.uuid4().hex[:10]}"


class EtcdServer:
    def __init__(self, directory: Path, timeout: float = 20.0,
                 max_txn_ops: int = MAX_TXN_OPS) -> None:
        self.binary = require_tool("etcd")
        self.max_txn_ops = max_txn_ops  # 128: etcd's own default
        self.directory = directory
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_port = self.peer_port = 0
        self.log_path = directory / "etcd.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str) -> str:
        return f"etcd://{self.endpoint}?prefix={prefix}"

    def start(self) -> EtcdServer:
        # ports picked just before use: a clash with another process is possible but rare,
        # and shows as etcd exiting at once, which the wait below reports; a restart keeps them
        if not self.client_port:
            self.client_port, self.peer_port = free_port(), free_port()
        client = f"http://{self.endpoint}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            self.binary, "--name", "test", "--data-dir", str(self.directory / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"test={peer_url}", "--max-txn-ops", str(self.max_txn_ops),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                response = httpx.get(f"{client}/health", timeout=1.0)
                if response.status_code == 200 and response.json().get("health") == "true":
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.timeout)

    def restart(self) -> None:
        """Stops and starts etcd again on the same ports and data (what a member's crash and
        return look like to its clients)."""
        self.stop()
        self.start()

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd for the test session (import this fixture into a test module to use it)."""
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server
