"""A real `tunnelnet server` process on 127.0.0.1 with a free port, for tests (bounded waits).

Started exactly as a user starts it (`python -m tunnelnet server --db ... --listen
127.0.0.1:0`); the port is the one the server reports on stdout. `stop()` sends SIGTERM, waits
(bounded) and kills if it must. The agent's and the lab's tests can use it too.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from tunnelnet.client import Client

ADMIN_TOKEN = "test-admin-token"
AGENT_TOKEN = "test-agent-token"
_LISTENING = re.compile(r"listening on (https?://\S+)")


class ServerProcess:
    def __init__(
        self,
        db: Path,
        config: Path | None = None,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        ca_file: Path | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.db = db
        self.config = config
        self.timeout = timeout
        self.extra_env = env or {}
        self.ca_file = ca_file  # what client() verifies an HTTPS controller with
        self.listen = listen  # a fixed port comes back on the same URL after a restart
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr_path = db.with_suffix(".stderr")

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = [sys.executable, "-m", "tunnelnet", "server", "--db", str(self.db),
                "--listen", self.listen]  # fmt: skip
        if self.config is not None:
            argv += ["--config", str(self.config)]
        env = {
            **os.environ,
            "TUNNELNET_ADMIN_TOKEN": ADMIN_TOKEN,
            "TUNNELNET_AGENT_TOKEN": AGENT_TOKEN,
            **self.extra_env,
        }
        env.pop("TUNNELNET_CONFIG", None)
        with open(self.stderr_path, "a") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                env=env,
            )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = lines.get(timeout=self.timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"server did not start: {self.stderr_path.read_text()}") from None
        match = _LISTENING.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"unexpected server output {line!r}: {self.stderr_path.read_text()}")
        self.url = match.group(1)

    def stop(self) -> int | None:
        """SIGTERM, bounded wait (then SIGKILL); the exit status (0 for a clean stop)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.timeout)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is closed cleanly."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait(timeout=self.timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, token: str = ADMIN_TOKEN) -> Client:
        ca_file = None if self.ca_file is None else str(self.ca_file)
        return Client(self.url, token, timeout=self.timeout, ca_file=ca_file)
