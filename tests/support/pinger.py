"""A ping running in a namespace while something happens, judged by ping's own statistics.

Its output goes to a file, not a pipe: a pipe nobody reads fills up (64 KiB, some 900 lines
at one line per reply) and then stops ping itself, which reads as a silence that never was.
ping ends on SIGINT, printing its statistics, or by itself at its deadline.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from types import TracebackType

STATS = re.compile(r"(\d+) packets transmitted, (\d+) received")
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ")


@dataclass(frozen=True)
class PingRun:
    sent: int
    received: int
    silence: float  # the longest time between two replies (ping's -D timestamps)
    output: str

    @property
    def lost(self) -> int:
        return self.sent - self.received


class Pinger:
    def __init__(self, netns: str, address: str, *, interval: float, deadline: int = 120
                 ) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in __exit__
        # `ip netns exec` execs ping: the pid is ping's, so SIGINT reaches it
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i", str(interval),
             "-w", str(deadline), "-W", "1", address],
            stdout=self._out, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> PingRun:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        self._proc.wait(timeout=30)
        self._out.seek(0)
        output = self._out.read()
        stats = STATS.search(output)
        if stats is None:
            raise AssertionError(f"ping printed no statistics:\n{output[-2000:]}")
        stamps = [float(m.group(1)) for line in output.splitlines()
                  if (m := REPLY.match(line))]
        if len(stamps) < 2:
            raise AssertionError(f"ping got fewer than 2 replies:\n{output[-2000:]}")
        silence = max(b - a for a, b in itertools.pairwise(stamps))
        return PingRun(int(stats.group(1)), int(stats.group(2)), silence, output)

    def __enter__(self) -> Pinger:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
