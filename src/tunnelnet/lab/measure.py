"""What tunnels cost, measured on the running lab: RTT and TCP throughput of the same
kinds of path with and without a tunnel, and the MTU each leaves the VMs."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

from tunnelnet.lab.probe import run_in_vm
from tunnelnet.lab.state import LabState, VmRecord
from tunnelnet.packet import tunnel_kinds


@dataclass(frozen=True, slots=True)
class PathFigures:
    label: str
    mtu: int
    rtt_ms: float | None
    tcp_gbps: float | None
    note: str = ""


def _ns_exec(ns: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _rtt(ns: str, ip: str, count: int = 20) -> float | None:
    out = _ns_exec(ns, ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", ip], 30).stdout
    for line in out.splitlines():
        if "min/avg/max" in line:
            return float(line.split("=")[1].split("/")[1])
    return None


def _iperf(src_ns: str, dst_ns: str, ip: str, seconds: int) -> float | None:
    server = subprocess.Popen(["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = _ns_exec(src_ns, ["iperf3", "-c", ip, "-t", str(seconds), "-J"],
                       seconds + 30).stdout
        try:
            data = json.loads(out)
            return round(float(data["end"]["sum_received"]["bits_per_second"]) / 1e9, 3)
        except (ValueError, KeyError):
            return None
    finally:
        server.kill()
        server.wait(timeout=10)


def _vm_path(label: str, a: VmRecord, b: VmRecord, seconds: int, note: str) -> PathFigures:
    run_in_vm(a, ["ping", "-c", "2", "-W", "1", b.ip], timeout=15)
    return PathFigures(label, a.mtu, _rtt(a.netns, b.ip), _iperf(a.netns, b.netns, b.ip,
                                                                    seconds), note)


def measure(state: LabState, *, seconds: int = 3) -> list[PathFigures]:
    """The underlay between two hypervisors (no tunnel, no switch of ours), two VMs on one
    hypervisor (our switch, no tunnel), and two VMs across hypervisors per tunnel type."""
    figures: list[PathFigures] = []
    hvs = sorted(state.hypervisors.items())
    if len(hvs) >= 2:
        (_n1, hv1), (_n2, hv2) = hvs[0], hvs[1]
        figures.append(PathFigures(
            "underlay, hypervisor to hypervisor (no tunnel)", 1500,
            _rtt(hv1["netns"], hv2["ip"]), _iperf(hv1["netns"], hv2["netns"], hv2["ip"],
                                                  seconds), "Linux only"))
    vms = sorted(state.vms.values(), key=lambda v: v.name)
    same_host = next(((a, b) for a in vms for b in vms if a.name < b.name
                      and a.network == b.network and a.hypervisor == b.hypervisor), None)
    if same_host:
        figures.append(_vm_path(f"VM to VM on one hypervisor ({same_host[0].name} -> "
                                f"{same_host[1].name})", *same_host, seconds,
                                "br-int only, never reaches a tunnel"))
    for kind in tunnel_kinds.all_kinds():
        pair = next(((a, b) for a in vms for b in vms if a.network == b.network
                     and a.hypervisor != b.hypervisor
                     and state.networks[a.network]["type"] == kind.name), None)
        if pair:
            figures.append(_vm_path(f"VM to VM across hypervisors over {kind.title} "
                                    f"({pair[0].name} -> {pair[1].name})", *pair, seconds,
                                    "br-int, br-tun, tunnel, br-tun, br-int"))
    return figures
