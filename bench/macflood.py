"""The MAC flood of issue 21 at full size: one VM sends 100,000 frames with random source and
destination MACs (at 68,000 frames/s, the rate measured in the issue) while the other tenant,
with the same addresses, pings across two hypervisors every 10 ms.

Prints what was tried and what it did: the bystander's ping p50/p99 idle and during the flood
and their ratio against the goal (p99 under 2x idle), its lost pings, the flood frames its VMs
received (goal 0), the attacker's own ping to a MAC it knew, and per switch what was learned
against the caps and how much was refused (learning caps, walk meter). A benchmark: it asserts
nothing; `--cap N` lowers the caps (default: the switch's own) so a run shows them full. The
attacker's port has port security off (else br-int's table 25 drops every frame not from its
own MAC before NORMAL; `--port-security` measures that case). Root.

    python -m bench.macflood [--frames N] [--rate FPS] [--pings N] [--cap N] [--port-security]

Writes bench/results/macflood.json beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from support.macflood_lab import FloodLab, FloodResult, p50, p99, run_attack

RESULTS = Path(__file__).resolve().parent / "results" / "macflood.json"


def report(result: FloodResult) -> list[str]:
    idle99, flood99 = p99(result.idle_rtts), p99(result.flood_rtts)
    ratio = flood99 / idle99 if idle99 else float("inf")
    sent = result.sender
    lines = [
        f"flood: {sent['sent']:,.0f} frames with random MACs in {sent['seconds']:.2f} s "
        f"({sent['sent'] / max(sent['seconds'], 1e-9):,.0f} frames/s), "
        f"{sent['refused']:.0f} refused by the VM's own NIC queue",
        f"bystander ping (blue1 -> blue2, 10 ms): idle p50 {p50(result.idle_rtts):.2f} ms "
        f"p99 {idle99:.2f} ms; during the flood p50 {p50(result.flood_rtts):.2f} ms "
        f"p99 {flood99:.2f} ms = {ratio:.2f}x idle "
        f"[{'PASS' if ratio < 2 else 'FAIL'}: goal < 2x]",
        f"bystander pings lost: {result.flood_loss} of {result.flood_pings_sent} "
        f"[{'PASS' if result.flood_loss == 0 else 'FAIL'}: goal 0]",
        f"flood frames received by blue1 {result.seen['blue1']}, blue2 {result.seen['blue2']} "
        f"[{'PASS' if result.seen['blue1'] + result.seen['blue2'] == 0 else 'FAIL'}: goal 0]"
        f"; by red2 (the attacker's own network) {result.seen['red2']}",
        f"attacker's ping to its known peer: {result.attacker_ping_replies} of "
        f"{result.attacker_pings} answered",
        "learned per switch (largest VLAN / cap, refused):",
    ]
    for name, fdb in result.fdb.items():
        caps = fdb["other_config"]
        macs = max(fdb["macs_per_vlan"].values(), default=0)
        flows = max((row["flows"] for row in fdb["learned_flows"]), default=0)
        lines.append(f"  {name}: MACs {macs}/{caps['mac-table-size']} refused "
                     f"{fdb['mac_limit_hits']}; learned flows {flows}/"
                     f"{caps['learn-flow-limit']} refused {fdb['learn_limit_hits']}")
    for hv, drops in result.drops.items():
        metered = {bridge: reasons.get("walk_limit", 0)
                   for bridge, reasons in drops["bridges"].items()}
        lines.append(f"  {hv}: new flows over the walk meter, dropped: " + ", ".join(
            f"{bridge} {count}" for bridge, count in metered.items()))
    for hv, stats in result.dp_stats.items():
        mode = stats.get("fastpath", {}).get("mode", "?")
        if "kernel_port_meter_rate" in stats:
            kept = ", ".join(f"{port} {count}" for port, count in
                             sorted(stats["kernel_port_meter_dropped_by_port"].items()))
            lines.append(f"  {hv}: fast path {mode}; kept from Python by the kernel's port "
                         f"meter ({stats['kernel_port_meter_rate']:g}/s per port): "
                         f"{kept or 'none'}; kernel entries removed "
                         f"{stats['kernel_removed']}")
        else:
            lines.append(f"  {hv}: fast path {mode}")
    return lines


def rows(result: FloodResult) -> list[dict[str, Any]]:
    """The resilience table's rows (bench/resilience.py), by the goals of the report above."""
    idle99, flood99 = p99(result.idle_rtts), p99(result.flood_rtts)
    ratio = flood99 / idle99 if idle99 else float("inf")
    sent = result.sender
    across = result.seen["blue1"] + result.seen["blue2"]
    return [{
        "what": "MAC flood: random source/destination MACs from one VM",
        "amount": f"{sent['sent']:,.0f} frames (MACs) at "
                  f"{sent['sent'] / max(sent['seconds'], 1e-9):,.0f}/s",
        "lost": f"{across} frames across tenants, {result.flood_loss} of "
                f"{result.flood_pings_sent} pings",
        "measured": f"ping p99 {flood99:.2f} ms = {ratio:.2f}x idle ({idle99:.2f} ms)",
        "goal": "0 across tenants, 0 pings lost, p99 < 2x idle",
        "passed": across == 0 and result.flood_loss == 0 and ratio < 2}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=68_000.0, help="frames per second")
    parser.add_argument("--pings", type=int, default=500, help="bystander pings, 10 ms apart")
    parser.add_argument("--cap", type=int, help="mac-table-size and learn-flow-limit to set")
    parser.add_argument("--port-security", action="store_true",
                        help="leave the attacker's port security on (table 25 drops the flood)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.macflood needs root (namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tn-macflood-") as work, \
            FloodLab(Path(work) / "lab", f"tnB{os.getpid() % 10000}").running() as lab:
        if args.cap is not None:
            lab.set_caps(mac_table_size=args.cap, learn_flow_limit=args.cap)
        result = run_attack(lab, Path(work), frames=args.frames, rate=args.rate,
                            pings=args.pings, port_security=args.port_security)
    lines = report(result)
    print("\n".join(lines))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**asdict(result), "summary": lines, "section": "macflood",
                                   "rows": rows(result)}, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
