"""How long from `port create` on the controller to the first ping that crosses hypervisors.

Brings up tests' agent topology in namespaces (root), then boots VMs one after another on
hv2 and pings each from r1 on hv1 every 10 ms from the moment its port is created, with and
without l2population. Prints the median and worst times. A benchmark, not a test: nothing
asserts a time. Run: `python -m bench.port_to_ping [--runs N]` (or as part of `make bench`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

from bench.lab_runner import bench_lab

TOPOLOGY = Path(__file__).resolve().parents[1] / "tests" / "netns" / "topologies" / "agent.toml"


def _first_ping(ns: str, ip: str, started: float, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        ok = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W0.01", ip],
                            capture_output=True, check=False).returncode == 0
        if ok:
            return time.monotonic() - started
        time.sleep(0.01)
    return None


def _ping_into(result: list[float | None], ns: str, ip: str, started: float) -> None:
    result.append(_first_ping(ns, ip, started, started + 30))


def measure(runs: int, l2pop: bool) -> list[float]:
    times: list[float] = []
    with bench_lab(TOPOLOGY, "tnb", l2pop=l2pop) as (runner, state):
        from tunnelnet.lab.topology import Vm

        src = state.vms["r1"]
        for i in range(runs):
            ip = f"10.1.0.{100 + i}"
            result: list[float | None] = []
            started = time.monotonic()
            # pinging starts with the port create; the VM exists moments later
            pinger = threading.Thread(target=_ping_into, args=(result, src.netns, ip, started))
            pinger.start()
            runner.add_vm(Vm(f"bench{i}", "red", "red-net", "hv2", ip))
            pinger.join()
            if result and result[0] is not None:
                times.append(result[0])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {}
    for l2pop in (True, False):
        times = measure(args.runs, l2pop)
        report["l2pop" if l2pop else "full-mesh"] = {
            "runs": len(times), "median_s": round(statistics.median(times), 3) if times else None,
            "max_s": round(max(times), 3) if times else None}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for mode, figures in report.items():
            print(f"port create -> first ping across hypervisors ({mode}): median "
                  f"{figures['median_s']} s, worst {figures['max_s']} s over {figures['runs']}")


if __name__ == "__main__":
    main()
