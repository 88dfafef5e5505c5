"""The real processes of the control-plane benchmark: etcd members, controllers, their costs.

Everything started here is recorded in a :class:`Processes` and stopped by it (SIGTERM, a
bounded wait, then SIGKILL), whatever happened; each process runs in a session of its own,
so a Ctrl-C at the terminal reaches the benchmark, which then stops them in order.
CPU and memory are read from /proc of each process (what `ps` shows), etcd's write counts
from its own Prometheus endpoint (/metrics), as an operator's dashboard would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN_TOKEN = "bench-admin-token"
AGENT_TOKEN = "bench-agent-token"
# a bulk create writes several keys per port in one etcd Txn; etcd's default of 128
# operations per Txn would cap a bulk create at a few dozen ports (docs/deploy.md)
ETCD_MAX_TXN_OPS = 10_000
_LISTENING = re.compile(r"listening on (https?://\S+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """The benchmark cannot go on (a process did not start, a wait ran out)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Cost:
    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


def cost(pid: int) -> Cost:
    """CPU seconds (user + system) and memory of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        # the command name may hold spaces and parentheses: fields count from the last ')'
        fields = f.read().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)
    rss = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return Cost(round(cpu, 2), round(rss, 1), round(peak, 1))


@dataclass
class Processes:
    """Every process the benchmark started, to be stopped exactly once, last first."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None,
              stdout: int | None = None, stdin: int | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                    stdout=stdout if stdout is not None else out, stderr=out,
                                    env=env, start_new_session=True)
        self.started.append((name, proc))
        return proc

    def stop_all(self, timeout: float = 15.0) -> None:
        while self.started:
            _name, proc = self.started.pop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def start_etcd(procs: Processes, workdir: Path, members: int, timeout: float = 30.0
               ) -> list[EtcdMember]:
    """A cluster of ``members`` etcd processes on loopback, each with its own data dir;
    returns when every member reports healthy (a leader was elected)."""
    binary = _tool("etcd")
    cluster = [EtcdMember(f"m{i + 1}", free_port(), free_port()) for i in range(members)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster)
    token = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    for m in cluster:
        argv = [binary, "--name", m.name, "--data-dir", str(workdir / f"etcd-{m.name}"),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token, "--max-txn-ops", str(ETCD_MAX_TXN_OPS)]
        m.proc = procs.spawn(f"etcd-{m.name}", argv, workdir / f"etcd-{m.name}.log")
    deadline = time.monotonic() + timeout
    for m in cluster:
        while not _etcd_healthy(m):
            if (m.proc is not None and m.proc.poll() is not None) or time.monotonic() > deadline:
                log = (workdir / f"etcd-{m.name}.log").read_text()[-1500:]
                raise BenchError(f"etcd member {m.name} did not become healthy: {log}")
            time.sleep(0.1)
    return cluster


def _etcd_healthy(member: EtcdMember) -> bool:
    try:
        response = httpx.get(f"{member.client_url}/health", timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("health") == "true"


# etcd's own counters (Prometheus text): keys written and deleted by its MVCC store, write
# transactions, and raft proposals committed (every write, lease grant and revoke is one)
ETCD_COUNTERS = ("etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total",
                 "etcd_server_proposals_committed_total")


def etcd_counters(member: EtcdMember) -> dict[str, float]:
    """The member's counters (absent names read 0: the figure then shows as 0, not a crash)."""
    text = httpx.get(f"{member.client_url}/metrics", timeout=5.0).text
    out = dict.fromkeys(ETCD_COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in out:
            out[name] = float(value)
    return out


def etcd_is_leader(member: EtcdMember) -> bool:
    text = httpx.get(f"{member.client_url}/metrics", timeout=5.0).text
    return any(line.startswith("etcd_server_is_leader ") and line.split()[1] == "1"
               for line in text.splitlines())


@dataclass
class ControllerProc:
    name: str
    proc: subprocess.Popen[bytes]
    url: str


def start_controller(procs: Processes, workdir: Path, name: str, store: str,
                     timeout: float = 30.0) -> ControllerProc:
    """`tunnelnet server` as an operator starts it, on a free loopback port."""
    log = workdir / f"{name}.log"
    env = {**os.environ, "TUNNELNET_ADMIN_TOKEN": ADMIN_TOKEN,
           "TUNNELNET_AGENT_TOKEN": AGENT_TOKEN}
    env.pop("TUNNELNET_CONFIG", None)
    argv = [sys.executable, "-m", "tunnelnet", "server", "--store", store,
            "--listen", "127.0.0.1:0"]
    proc = procs.spawn(name, argv, log, env=env, stdout=subprocess.PIPE)
    found: list[str] = []
    stdout = proc.stdout
    if stdout is None:
        raise BenchError(f"{name}: no stdout")

    def read_stdout() -> None:
        found.append(stdout.readline().decode(errors="replace"))
        for _line in stdout:  # drained, so that a chatty server never blocks on a full pipe
            pass

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    match = _LISTENING.search(found[0]) if found else None
    if match is None:
        raise BenchError(f"{name} did not start: {log.read_text()[-1500:]}")
    return ControllerProc(name, proc, match.group(1))


def _tool(name: str) -> str:
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BenchError(f"{name} is not installed (Debian: apt-get install etcd-server)")
