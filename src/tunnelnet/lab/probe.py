"""Looking into a running lab: commands in a VM, pings, and the full reachability matrix.

A ping that gets an answer is not proof that the intended VM answered: two tenants may use
the same address. So a pair counts as reachable only when the ping succeeds *and* the
source's neighbour entry for that address holds the destination VM's own MAC.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tunnelnet.lab.state import LabState, VmRecord
from tunnelnet.lab.topology import TopologyError


def vm_of(state: LabState, name: str) -> VmRecord:
    try:
        return state.vms[name]
    except KeyError:
        raise TopologyError(f"no VM named {name!r} in this lab "
                            f"(VMs: {', '.join(sorted(state.vms))})") from None


def run_in_vm(vm: VmRecord, argv: Sequence[str], *, timeout: float = 60.0,
              capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", vm.netns, *argv], capture_output=capture,
                          text=True, timeout=timeout, check=False)


@dataclass(frozen=True, slots=True)
class PingResult:
    src: str
    dst: str
    replied: bool
    answered_by: str | None  # MAC in the source's neighbour table for the address
    rtt_ms: float | None

    def reached(self, dst: VmRecord) -> bool:
        return self.replied and self.answered_by == dst.mac


def _neighbour_mac(vm: VmRecord, ip: str) -> str | None:
    out = run_in_vm(vm, ["ip", "-json", "neigh", "show", ip, "dev", "eth0"], timeout=10)
    try:
        entries = json.loads(out.stdout or "[]")
    except ValueError:
        return None
    for entry in entries:
        if entry.get("lladdr") and entry.get("state", ["FAILED"]) != ["FAILED"]:
            return str(entry["lladdr"]).lower()
    return None


def ping(src: VmRecord, dst: VmRecord, *, count: int = 2, wait: float = 1.0) -> PingResult:
    # a fresh ARP each time: a stale entry from an earlier pair must not vouch for this one
    run_in_vm(src, ["ip", "neigh", "flush", "dev", "eth0", "to", dst.ip], timeout=10)
    proc = run_in_vm(src, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait),
                           dst.ip], timeout=count * wait + 10)
    rtt = None
    for line in proc.stdout.splitlines():
        if "min/avg/max" in line:
            rtt = float(line.split("=")[1].split("/")[1])
    return PingResult(src.name, dst.name, proc.returncode == 0, _neighbour_mac(src, dst.ip),
                      rtt)


@dataclass(frozen=True, slots=True)
class MatrixCell:
    src: str
    dst: str
    expected: bool
    reached: bool
    detail: str

    @property
    def surprise(self) -> bool:
        return self.expected != self.reached


def verify(state: LabState, *, workers: int = 6) -> list[MatrixCell]:
    """Every ordered pair of VMs: same network must be reachable, anything else must not."""
    pairs = [(a, b) for a in state.vms.values() for b in state.vms.values() if a.name != b.name]
    # pings from one VM run one after another (they share its neighbour table)
    by_source: dict[str, list[tuple[VmRecord, VmRecord]]] = {}
    for a, b in pairs:
        by_source.setdefault(a.name, []).append((a, b))

    def run_source(items: list[tuple[VmRecord, VmRecord]]) -> list[MatrixCell]:
        cells = []
        for a, b in items:
            result = ping(a, b)
            reached = result.reached(b)
            if reached:
                detail = f"replied, rtt {result.rtt_ms} ms"
            elif result.replied:
                detail = f"a different host answered for {b.ip} ({result.answered_by})"
            else:
                detail = "no reply"
            cells.append(MatrixCell(a.name, b.name, a.network == b.network, reached, detail))
        return cells

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(run_source, by_source.values())
    return [cell for cells in results for cell in cells]
