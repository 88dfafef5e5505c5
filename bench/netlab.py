"""The benchmark's topology and measurements: two hypervisor namespaces on an underlay bridge,
one VM namespace behind each, and iperf3/ping figures between the two VMs.

Self-contained (iproute2, iperf3, ping through subprocess) so that a user's clone runs it
without the tests' helpers. Every namespace name carries the benchmark's pid, so a run never
touches another run's or a test's namespaces, and ``Lab.close()`` removes all it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

UNDERLAY = "192.0.2.{}"
VM_IP = "10.0.0.{}"
VM_MAC = "02:00:00:00:00:0{}"
_PING_TIME = re.compile(rb"time=([0-9.]+) ms")
_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A datapath could not be set up or measured; the message says which step."""


def run(argv: list[str], *, netns: str | None = None, timeout: float = 30.0,
        env: dict[str, str] | None = None, check: bool = True) -> str:
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise BenchError(f"{' '.join(cmd)}: {err}")
    return proc.stdout.decode(errors="replace")


@dataclass
class Lab:
    """The namespaces of one datapath's measurement, and the processes started in them."""

    prefix: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def names(self) -> list[str]:
        return [self.ns(r) for r in ("ul", "hv1", "hv2", "vm1", "vm2")]

    def build(self) -> None:
        """Underlay bridge in ``ul``; ``hvN`` has eth0 on it with 192.0.2.N and tapN, the
        host end of vmN's eth0 (10.0.0.N); nothing connects tapN yet (that is the datapath)."""
        for name in self.names:
            run(["ip", "netns", "add", name])
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        ul = self.ns("ul")
        run(["ip", "-n", ul, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", ul, "link", "set", "br0", "up"])
        for i in (1, 2):
            hv, vm = self.ns(f"hv{i}"), self.ns(f"vm{i}")
            run(["ip", "link", "add", f"ul{i}", "netns", ul, "type", "veth", "peer", "name",
                 "eth0", "netns", hv])
            run(["ip", "-n", ul, "link", "set", f"ul{i}", "master", "br0", "up"])
            run(["ip", "-n", hv, "addr", "add", f"{UNDERLAY.format(i)}/24", "dev", "eth0"])
            # GRO on the uplink, as a physical NIC has it by default (a veth has it off);
            # the same for every datapath measured
            run(["ethtool", "-K", "eth0", "gro", "on"], netns=hv, check=False)
            run(["ip", "-n", hv, "link", "set", "eth0", "up"])
            run(["ip", "link", "add", f"tap{i}", "netns", hv, "type", "veth", "peer", "name",
                 "eth0", "netns", vm])
            run(["ip", "-n", hv, "link", "set", f"tap{i}", "up"])
            run(["ip", "-n", vm, "link", "set", "eth0", "address", VM_MAC.format(i)])
            run(["ip", "-n", vm, "addr", "add", f"{VM_IP.format(i)}/24", "dev", "eth0"])
            run(["ip", "-n", vm, "link", "set", "eth0", "up"])

    def vm_mtu(self, mtu: int) -> None:
        for i in (1, 2):
            run(["ip", "-n", self.ns(f"vm{i}"), "link", "set", "eth0", "mtu", str(mtu)])

    def offloads_off(self, *, taps: bool = True) -> None:
        """Userspace datapaths see raw frames: no partial checksums, no 64 KiB super-frames."""
        for i in (1, 2):
            run(["ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off"],
                netns=self.ns(f"vm{i}"), check=False)
            if taps:
                run(["ethtool", "-K", f"tap{i}", "tx", "off", "tso", "off", "gso", "off"],
                    netns=self.ns(f"hv{i}"), check=False)

    def spawn(self, argv: list[str], *, netns: str, log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs the command: the Popen pid is the daemon's own pid
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        for name in self.names:
            run(["ip", "netns", "del", name], check=False)


def wait_for(ready: object, what: str, timeout: float = 20.0) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise BenchError(f"{what}: not ready within {timeout:.0f} s")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent not idle (user, system, interrupts and
    softirq: where a kernel datapath's work is done), from /proc/stat's first line."""
    with open("/proc/stat") as stat:
        first = stat.readline().split()
    ticks = [int(n) for n in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


@dataclass
class Figures:
    tcp1_gbps: float | None = None
    tcp4_gbps: float | None = None
    udp64_pps: float | None = None
    rtt_avg_ms: float | None = None
    rtt_p99_ms: float | None = None
    cpu_s_per_gbit: float | None = None
    # the whole machine's busy CPU per gigabit during the single-stream TCP run: both ends'
    # iperf3, the kernel's softirq work and the datapath's process alike, so that a datapath
    # whose work is in the kernel (Linux's, our fast path) is not counted as free; meaningful
    # on an otherwise quiet machine only
    machine_cpu_s_per_gbit: float | None = None


def connected(lab: Lab, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", lab.ns("vm1"), "ping", "-c1", "-W1",
                              VM_IP.format(2)], capture_output=True, check=False)
        if out.returncode == 0:
            return True
        time.sleep(0.2)
    return False


# what iperf3 says when its one-test-at-a-time server is still closing the previous test
# (seen on a loaded machine): worth asking again, unlike any other error
_SERVER_NOT_READY = ("unable to connect to server", "the server is busy")


def _iperf(lab: Lab, args: list[str], seconds: float, attempts: int = 4) -> dict[str, object]:
    argv = ["iperf3", "-c", VM_IP.format(2), "-t", f"{seconds:g}", "-J", *args]
    for attempt in range(attempts):
        text = run(argv, netns=lab.ns("vm1"), timeout=seconds + 30, check=False)
        try:
            data: dict[str, object] = json.loads(text)
        except ValueError:
            raise BenchError(f"iperf3 {' '.join(args)}: no JSON ({text[:200]!r})") from None
        error = str(data.get("error", ""))
        if not error:
            return data
        if attempt + 1 == attempts or not any(s in error for s in _SERVER_NOT_READY):
            raise BenchError(f"iperf3 {' '.join(args)}: {error}")
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _end(data: dict[str, object], part: str) -> dict[str, float]:
    end = data["end"]
    assert isinstance(end, dict)
    value = end[part]
    assert isinstance(value, dict)
    return value


def measure(lab: Lab, *, seconds: float, pings: int, cpu_pids: list[int]) -> Figures:
    fig = Figures()
    before, machine_before = cpu_seconds(cpu_pids), machine_busy_seconds()
    tcp = _iperf(lab, [], seconds)
    used = cpu_seconds(cpu_pids) - before
    machine_used = machine_busy_seconds() - machine_before
    received = _end(tcp, "sum_received")
    fig.tcp1_gbps = received["bits_per_second"] / 1e9
    gigabits = received["bytes"] * 8 / 1e9
    if cpu_pids and gigabits > 0:
        fig.cpu_s_per_gbit = used / gigabits
    if gigabits > 0:
        fig.machine_cpu_s_per_gbit = machine_used / gigabits
    fig.tcp4_gbps = _end(_iperf(lab, ["-P", "4"], seconds), "sum_received")[
        "bits_per_second"] / 1e9
    udp = _end(_iperf(lab, ["-u", "-b", "0", "-l", "64"], seconds), "sum")
    if udp.get("seconds"):
        fig.udp64_pps = (udp["packets"] - udp["lost_packets"]) / udp["seconds"]
    if pings:
        fig.rtt_avg_ms, fig.rtt_p99_ms = rtt_figures(ping_times(lab, pings))
    return fig


def ping_times(lab: Lab, count: int) -> list[float]:
    """Round-trip times (ms) of ``count`` pings 2 ms apart from vm1 to vm2."""
    out = subprocess.run(["ip", "netns", "exec", lab.ns("vm1"), "ping", "-c", str(count),
                          "-i", "0.002", "-W", "1", VM_IP.format(2)],
                         capture_output=True, timeout=count * 0.05 + 30, check=False).stdout
    return [float(t) for t in _PING_TIME.findall(out)]


def interleaved_ping_times(labs: list[Lab], count: int, blocks: int) -> list[list[float]]:
    """``count`` pings per lab in ``blocks`` blocks that take turns between the labs (in
    alternating order), so that a slow spell of the machine, which moves RTT far more than any
    other figure, falls on all of them alike. Times per lab, in the labs' order."""
    blocks = max(1, min(blocks, count))
    times: list[list[float]] = [[] for _ in labs]
    for block in range(blocks):
        size = count // blocks + (1 if block < count % blocks else 0)
        order = list(enumerate(labs))
        for i, lab in order if block % 2 == 0 else order[::-1]:
            times[i] += ping_times(lab, size)
    return times


def rtt_figures(times: list[float]) -> tuple[float | None, float | None]:
    """Average and 99th percentile of round-trip times."""
    if not times:
        return None, None
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.fmean(ordered), p99
