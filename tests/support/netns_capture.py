"""tcpdump on an interface of a namespace the test made, and `ip link` facts read there, for
the tests that judge the bytes the kernel fast path writes (scapy reads the files).

A capture is started only once tcpdump says it listens, so nothing sent after
``start_capture`` returns is missed; it ends by itself after ``limit_s`` if a test dies
before stopping it, so no tcpdump outlives its test run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.netns import run
from support.tools import require_tool


def link_of(ns: str, ifname: str) -> dict[str, object]:
    """What `ip -j link show` says of one interface inside ``ns``."""
    shown = json.loads(run(["ip", "-n", ns, "-j", "link", "show", ifname]).stdout)
    return dict(shown[0])


def start_capture(ns: str, ifname: str, pcap: Path, *expression: str,
                  limit_s: int = 60) -> subprocess.Popen[str]:
    """tcpdump writing every packet matching ``expression`` on ``ifname`` to ``pcap``."""
    tcpdump = require_tool("tcpdump")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "timeout", str(limit_s), tcpdump,
                             "--immediate-mode", "-i", ifname, "-U", "-w", str(pcap),
                             *expression], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on IF ...": the capture is on
    assert "listening" in line, f"tcpdump in {ns} on {ifname} did not start: {line}"
    return proc


def stop_capture(proc: subprocess.Popen[str], *, settle_s: float = 0.3) -> None:
    """Stop after ``settle_s``: frames still in flight get written; SIGINT flushes the file."""
    time.sleep(settle_s)
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


@contextmanager
def capturing(ns: str, ifname: str, pcap: Path, *expression: str) -> Iterator[Path]:
    """``start_capture`` for the body of a with-statement; stopped however it ends."""
    proc = start_capture(ns, ifname, pcap, *expression)
    try:
        yield pcap
    finally:
        stop_capture(proc)
