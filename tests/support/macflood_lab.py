"""The MAC flood attack on a namespace lab, from the attacker's side, judged from outside: the
namespace test (scaled down) and `python -m bench.macflood` (full size) both run it.

topologies/macflood.toml: tenants red and blue both use 10.0.0.0/24, one VM of each on each of
two hypervisors. red1 (its port's spoofing protection off, unless asked) floods (mac_flood.py,
inside its namespace); blue1 pings blue2 at 10 ms intervals before (idle) and during it;
tcpdump on blue's NICs and on red2's counts the flood's frames (by their EtherType and marker,
read back with scapy); red1's ping to red2
(a MAC learned before) says whether the attacker's own network still works. What the switches
learned and refused is read with `tunnelnet ofctl fdb-show` / `dump-drops`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.l2 import Ether  # noqa: F401 (rdpcap dissects Ethernet with it)
from scapy.utils import rdpcap

from support.lab_cli import lab_state, run_lab, running_lab

TOPOLOGY = Path(__file__).resolve().parents[1] / "netns" / "topologies" / "macflood.toml"
SENDER = Path(__file__).resolve().parent / "mac_flood.py"
ETHERTYPE = 0x88B5
MARKER = b"TNMACFLOOD"
_TIME = re.compile(r"time=([0-9.]+) ms")
_RECEIVED = re.compile(r"(\d+) received")


@dataclass
class FloodResult:
    idle_rtts: list[float]
    flood_rtts: list[float]
    flood_pings_sent: int
    sender: dict[str, float]
    seen: dict[str, int]  # tap name -> flood frames captured there
    attacker_ping_replies: int
    attacker_pings: int
    fdb: dict[str, dict[str, Any]] = field(default_factory=dict)  # "hv1 br-int" -> fdb-show
    drops: dict[str, dict[str, Any]] = field(default_factory=dict)  # hv -> dump-drops
    dp_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # hv -> dp-stats
    # hv -> dp-stats once the known MACs are warm, before the flood
    dp_stats_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    taps: dict[str, str] = field(default_factory=dict)  # VM -> its port on the hypervisor

    @property
    def flood_loss(self) -> int:
        return self.flood_pings_sent - len(self.flood_rtts)


def p99(rtts: list[float]) -> float:
    ordered = sorted(rtts)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]


def p50(rtts: list[float]) -> float:
    return sorted(rtts)[len(rtts) // 2]


class FloodLab:
    """A lab of topologies/macflood.toml under its own prefix and directory."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.state: dict[str, Any] = {}

    def tn(self, command: str, *args: str, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        return run_lab(self.prefix, self.directory, *args, command=command, timeout=timeout)

    @contextmanager
    def running(self) -> Iterator[FloodLab]:
        """The lab up for the block; down after it, with nothing of it left (running_lab)."""
        with running_lab(self.prefix, TOPOLOGY, self.directory):
            self.state = lab_state(self.directory)
            yield self

    def vm(self, name: str) -> dict[str, Any]:
        vm: dict[str, Any] = self.state["vms"][name]
        return vm

    def hv(self, name: str) -> dict[str, Any]:
        hv: dict[str, Any] = self.state["hypervisors"][name]
        return hv

    def ofctl(self, hv: str, *args: str) -> Any:
        done = self.tn("ofctl", "--rundir", self.hv(hv)["rundir"], *args, "--json")
        if done.returncode != 0:
            raise RuntimeError(f"ofctl {' '.join(args)} on {hv}: {done.stderr}")
        return json.loads(done.stdout)

    def disable_port_security(self, vm: str, timeout: float = 30.0) -> None:
        """The attacker's port without spoofing protection (Neutron's
        port_security_enabled=False, as a VM running a router or a load balancer has it):
        with it on, br-int's table 25 already drops every frame not from the port's own MAC,
        flood included. Waits until the agent has removed the port's MAC check."""
        info = self.vm(vm)
        done = self.tn("port", "set", info["port_id"], "--disable-port-security", "--url",
                       self.state["server_url"], "--token", self.state["admin_token"])
        if done.returncode != 0:
            raise RuntimeError(f"port set --disable-port-security: {done.stderr}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flows = self.ofctl(info["hypervisor"], "dump-flows", "br-int", "table=25")
            if not any(f"dl_src={info['mac']}" in line for line in flows):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{vm}'s port still has its MAC check after {timeout:.0f} s")

    def set_caps(self, **caps: int) -> None:
        """other_config caps on both bridges of both hypervisors (vsctl set bridge ...)."""
        settings = [f"other_config:{k.replace('_', '-')}={v}" for k, v in caps.items()]
        for hv in ("hv1", "hv2"):
            for bridge in ("br-int", "br-tun"):
                done = self.tn("vsctl", "--rundir", self.hv(hv)["rundir"], "set", "bridge",
                               bridge, *settings)
                if done.returncode != 0:
                    raise RuntimeError(f"vsctl set on {hv} {bridge}: {done.stderr}")

    def ping(self, src: str, dst: str, count: int, interval: float = 0.01
             ) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.vm(src)["netns"], "ping", "-n",
                                 "-i", str(interval), "-c", str(count), "-W", "2",
                                 self.vm(dst)["ip"]], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def capture(self, vm: str, pcap: Path) -> subprocess.Popen[bytes]:
        """tcpdump on ``vm``'s NIC, inside the VM: the frames the switch delivered to it over
        its tap (on the tap's host side tcpdump would miss them: the switch sends with
        PACKET_QDISC_BYPASS, which packet taps do not see). Filtered on the flood's
        EtherType."""
        return subprocess.Popen(["ip", "netns", "exec", self.vm(vm)["netns"], "tcpdump", "-U",
                                 "-n", "-i", "eth0", "-w", str(pcap),
                                 f"ether proto {ETHERTYPE:#x}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def flood(self, count: int, rate: float, seed: int) -> dict[str, float]:
        done = subprocess.run(["ip", "netns", "exec", self.vm("red1")["netns"], sys.executable,
                               str(SENDER), "eth0", str(count), str(rate), str(seed)],
                              capture_output=True, text=True, timeout=120, check=True)
        sent: dict[str, float] = json.loads(done.stdout)
        return sent


def rtts_of(proc: subprocess.Popen[str], timeout: float) -> list[float]:
    out, _ = proc.communicate(timeout=timeout)
    return [float(t) for t in _TIME.findall(out)]


def replies_of(proc: subprocess.Popen[str], timeout: float) -> int:
    out, _ = proc.communicate(timeout=timeout)
    found = _RECEIVED.search(out)
    return int(found.group(1)) if found else 0


def flood_frames_in(pcap: Path) -> int:
    if not pcap.exists() or pcap.stat().st_size == 0:
        return 0
    return sum(1 for packet in rdpcap(str(pcap)) if MARKER in bytes(packet))


def run_attack(lab: FloodLab, work: Path, *, frames: int, rate: float, pings: int,
               seed: int = 1, port_security: bool = False) -> FloodResult:
    """Warm the known MACs, measure idle, then flood while pinging and capturing. Without
    ``port_security`` the attacker's port has it disabled, so the flood reaches NORMAL and
    learn() (the case the caps are for); with it, table 25 drops the flood after its walk."""
    if not port_security:
        lab.disable_port_security("red1")
    for src, dst in (("red1", "red2"), ("blue1", "blue2")):  # the MACs learned before
        warm = lab.ping(src, dst, 3, 0.2)
        replies_of(warm, 30)
    idle = rtts_of(lab.ping("blue1", "blue2", pings), 60 + pings * 0.05)
    before = {hv: lab.ofctl(hv, "dp-stats") for hv in ("hv1", "hv2")}
    taps = {"blue1": work / "blue1.pcap", "blue2": work / "blue2.pcap",
            "red2": work / "red2.pcap"}
    captures = [lab.capture(vm, pcap) for vm, pcap in taps.items()]
    try:
        time.sleep(1.0)  # tcpdump listens once it has opened the interface
        bystander = lab.ping("blue1", "blue2", pings)
        time.sleep(0.2)
        sender = lab.flood(frames, rate, seed)
        attacker = lab.ping("red1", "red2", 10, 0.1)
        flood_rtts = rtts_of(bystander, 60 + pings * 0.05)
        attacker_replies = replies_of(attacker, 60)
        time.sleep(0.5)
    finally:
        for proc in captures:
            proc.terminate()
            proc.wait(timeout=10)
    result = FloodResult(idle, flood_rtts, pings, sender,
                         {vm: flood_frames_in(pcap) for vm, pcap in taps.items()},
                         attacker_replies, 10, dp_stats_before=before,
                         taps={vm: lab.vm(vm)["tap"] for vm in ("red1", "red2", "blue1",
                                                                "blue2")})
    for hv in ("hv1", "hv2"):
        for bridge in ("br-int", "br-tun"):
            result.fdb[f"{hv} {bridge}"] = lab.ofctl(hv, "fdb-show", bridge)
        result.drops[hv] = lab.ofctl(hv, "dump-drops")
        result.dp_stats[hv] = lab.ofctl(hv, "dp-stats")
    return result
