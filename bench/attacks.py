"""What a hostile underlay costs the tenants: VXLAN floods at full size, under a tenant ping.

Brings up the adversarial tests' lab (tests/adversarial/topologies/attacks.toml: red over
VXLAN, blue over GRE, equal addresses, hv1 and hv2) in namespaces (root), gives the underlay
bridge an address that is no hypervisor's, and measures r1 -> r2's ping (every 10 ms, across
the tunnel) idle and then while the underlay floods hv1 with VXLAN packets at RATE per second
for SECONDS: once with tenant red's VNI from that non-peer address, once with an unassigned
VNI from hv2's own (spoofed) address. Reported per attack: packets sent and the rate reached,
hv1's drops by reason (``ofctl dump-drops``), frames that reached any VM (captured on every
VM's interface), ping p99 idle and under attack, replies lost. The issue's goal: 0 frames
delivered and p99 under 2 x idle. A benchmark, not a test: nothing asserts; figures are
printed and written to bench/results/attacks.json.

    python -m bench.attacks [--rate 50000] [--seconds 10] [--senders 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.lab_runner import bench_lab

TOPOLOGY = (Path(__file__).resolve().parents[1] / "tests" / "adversarial" / "topologies"
            / "attacks.toml")
RESULTS = Path(__file__).with_name("results") / "attacks.json"
NON_PEER = "192.0.2.250"
UNASSIGNED_VNI = 7777
INTERVAL = 0.01
RTT = re.compile(r"time=([\d.]+) ms")

# one sender: COUNT IPv4 packets (headers included) from stdin, round robin, at RATE per second
_INJECT = """
import socket, sys, time
packets = [bytes.fromhex(line) for line in sys.stdin.read().split()]
count, rate = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
start = time.monotonic()
for i in range(count):
    packet = packets[i % len(packets)]
    try:
        s.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
    except OSError:
        pass
    if i % 200 == 199:
        ahead = (i + 1) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
"""


def _ns(netns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, timeout=120, check=True).stdout


def _vxlan(src: str, dst: str, vni: int, marker: bytes) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    inner = (Ether(src="02:00:00:00:66:66", dst="ff:ff:ff:ff:ff:ff")
             / IP(src="10.73.0.66", dst="10.73.0.255") / UDP(sport=40000, dport=40000)
             / marker)
    header = struct.pack("!II", 0x08 << 24, vni << 8)  # RFC 7348 section 5
    return bytes(IP(src=src, dst=dst) / UDP(sport=49152, dport=4789)
                 / Raw(header + bytes(inner)))


def _p99(rtts: list[float]) -> float | None:
    if not rtts:
        return None
    ordered = sorted(rtts)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _ping(netns: str, ip: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-n", "-i", str(INTERVAL),
                             "-c", str(count), "-W", "1", ip], stdout=subprocess.PIPE,
                            text=True)


def _drops(rundir: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "tunnelnet", "ofctl", "--rundir", rundir,
                          "dump-drops", "--json"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    drops = json.loads(out)
    total: dict[str, int] = dict(drops["daemon"])
    for reasons in drops["bridges"].values():
        for reason, count in reasons.items():
            total[reason] = total.get(reason, 0) + count
    return total


def _flood(state: dict[str, Any], packet: bytes, rate: int, seconds: float, senders: int,
           marker: bytes, directory: Path, name: str) -> dict[str, Any]:
    underlay = f"{os.environ['TUNNELNET_LAB_PREFIX']}-underlay"
    r1, r2 = state["vms"]["r1"], state["vms"]["r2"]
    rundir = state["hypervisors"]["hv1"]["rundir"]
    captures = {vm: subprocess.Popen(["ip", "netns", "exec", v["netns"], "tcpdump", "-n", "-U",
                                      "-i", "eth0", "-w", str(directory / f"{name}-{vm}.pcap"),
                                      "udp port 40000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for vm, v in state["vms"].items()}
    time.sleep(1.0)
    before = _drops(rundir)
    per_sender = int(rate * seconds / senders)
    pinger = _ping(r1["netns"], r2["ip"], int(seconds / INTERVAL))
    start = time.monotonic()
    procs = []
    for _ in range(senders):
        proc = subprocess.Popen(["ip", "netns", "exec", underlay, sys.executable, "-c", _INJECT,
                                 str(per_sender), str(rate / senders)], stdin=subprocess.PIPE,
                                text=True)
        assert proc.stdin is not None
        proc.stdin.write(packet.hex())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        proc.wait(timeout=seconds * 10 + 60)
    elapsed = time.monotonic() - start
    out, _ = pinger.communicate(timeout=seconds * 10 + 60)
    time.sleep(0.5)
    delta = {k: v - before.get(k, 0) for k, v in _drops(rundir).items()
             if v != before.get(k, 0)}
    delivered = 0
    from scapy.utils import rdpcap

    for vm, proc in captures.items():
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        delivered += sum(marker in bytes(f) for f in rdpcap(str(directory / f"{name}-{vm}.pcap")))
    rtts = [float(m.group(1)) for m in RTT.finditer(out)]
    return {"sent": per_sender * senders, "seconds": round(elapsed, 2),
            "rate_reached": round(per_sender * senders / elapsed), "drops": delta,
            "delivered_to_vms": delivered, "pings": int(seconds / INTERVAL),
            "replies": len(rtts), "p99_ms": _p99(rtts)}


def measure(rate: int, seconds: float, senders: int) -> dict[str, Any]:
    report: dict[str, Any] = {"rate": rate, "seconds": seconds, "senders": senders}
    with bench_lab(TOPOLOGY, "tnb") as (runner, _):
        directory = runner.directory
        state = json.loads((directory / "state.json").read_text())
        _ns(f"{os.environ['TUNNELNET_LAB_PREFIX']}-underlay", "ip", "addr", "add",
            f"{NON_PEER}/24", "dev", "br-underlay")
        r1, r2 = state["vms"]["r1"], state["vms"]["r2"]
        hv1, hv2 = (state["hypervisors"][h]["ip"] for h in ("hv1", "hv2"))
        red = int(state["networks"]["red-net"]["segment"])
        _ping(r1["netns"], r2["ip"], 5).communicate(timeout=60)
        idle, _ = _ping(r1["netns"], r2["ip"], int(seconds / INTERVAL)).communicate(timeout=600)
        idle_rtts = [float(m.group(1)) for m in RTT.finditer(idle)]
        report["idle"] = {"replies": len(idle_rtts), "p99_ms": _p99(idle_rtts)}
        for name, src, vni in (("red VNI from a non-peer", NON_PEER, red),
                               ("unassigned VNI from hv2's address", hv2, UNASSIGNED_VNI)):
            marker = f"tn-bench-{os.getpid()}-{vni}".encode()
            report[name] = _flood(state, _vxlan(src, hv1, vni, marker), rate, seconds,
                                  senders, marker, directory, str(vni))
    return report


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The resilience table's rows (bench/resilience.py): one per attack, judged by the
    issue's goal (0 frames delivered to any VM, ping p99 under 2x idle)."""
    idle = report["idle"]["p99_ms"]
    out = []
    for name, row in report.items():
        if not isinstance(row, dict) or "sent" not in row:
            continue
        p99 = row["p99_ms"]
        ratio = f" = {p99 / idle:.2f}x idle" if p99 is not None and idle else ""
        out.append({
            "what": f"VXLAN flood: {name}",
            "amount": f"{row['sent']:,} packets at {row['rate_reached']:,}/s",
            "lost": f"{row['delivered_to_vms']} frames to VMs, "
                    f"{row['pings'] - row['replies']} of {row['pings']} pings",
            "measured": f"ping p99 {p99} ms{ratio} (idle {idle} ms)",
            "goal": "0 delivered, p99 < 2x idle",
            "passed": bool(row["delivered_to_vms"] == 0 and p99 is not None and idle
                           and p99 < 2 * idle)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=50000, help="packets per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=4, help="sending processes")
    args = parser.parse_args()
    report = measure(args.rate, args.seconds, args.senders)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**report, "section": "attacks", "rows": rows(report)},
                                  indent=2) + "\n")
    idle = report["idle"]["p99_ms"]
    print(f"ping r1 -> r2 every {INTERVAL * 1000:.0f} ms, idle: p99 {idle} ms")
    print(f"{'attack':36} {'sent':>8} {'rate/s':>8} {'to VMs':>6} {'p99 ms':>8} "
          f"{'replies':>9}  drops on hv1  goal (0 delivered, p99 < 2x idle)")
    for name, row in report.items():
        if not isinstance(row, dict) or "sent" not in row:
            continue
        ok = row["delivered_to_vms"] == 0 and row["p99_ms"] is not None and idle \
            and row["p99_ms"] < 2 * idle
        print(f"{name:36} {row['sent']:>8} {row['rate_reached']:>8} "
              f"{row['delivered_to_vms']:>6} {row['p99_ms']!s:>8} "
              f"{row['replies']:>4}/{row['pings']:<4}  {row['drops']}  "
              f"{'pass' if ok else 'FAIL'}")
    print(f"(JSON: {RESULTS})")


if __name__ == "__main__":
    main()
