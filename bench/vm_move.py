"""How many pings a live-migrated VM loses: ``lab move`` under a ping every 10 ms.

Brings up the tests' move topology in namespaces (root), then moves "mover" between hv1 and
hv2 again and again while "pinger" on hv3 pings it every 10 ms, one ping run per move, with
and without l2population. Lost replies come from ping's own statistics, the longest silence
from its -D timestamps. A benchmark, not a test: nothing asserts a time. Run:
``python -m bench.vm_move [--moves N] [--json]`` (or as part of ``make bench``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.lab_runner import bench_lab

TOPOLOGY = Path(__file__).resolve().parents[1] / "tests" / "netns" / "topologies" / "move.toml"
INTERVAL = 0.01
STATS = re.compile(r"(\d+) packets transmitted, (\d+) received")
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ")


def _ping_during(netns: str, address: str, action: Any) -> tuple[int, float, Any]:
    """Ping ADDRESS from NETNS around ACTION(); (replies lost, longest silence, its result).
    Output goes to a file: a pipe nobody reads would stop ping once full."""
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i",
                                 str(INTERVAL), "-w", "60", "-W", "1", address],
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)
            result = action()
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        out.seek(0)
        text = out.read()
    stats = STATS.search(text)
    stamps = [float(m.group(1)) for line in text.splitlines() if (m := REPLY.match(line))]
    if stats is None or len(stamps) < 2:
        raise RuntimeError(f"ping gave no usable output:\n{text[-1000:]}")
    silence = max(b - a for a, b in itertools.pairwise(stamps))
    return int(stats.group(1)) - int(stats.group(2)), silence, result


def measure(moves: int, l2pop: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with bench_lab(TOPOLOGY, "tnm", l2pop=l2pop) as (runner, state):
        from tunnelnet.lab.migrate import Mover

        pinger, mover = state.vms["pinger"], state.vms["mover"]
        for n in range(moves):
            target = "hv2" if n % 2 == 0 else "hv1"
            lost, silence, moved = _ping_during(
                pinger.netns, mover.ip,
                lambda target=target: Mover(runner, lambda _m: None).move("mover", target))
            rows.append({"to": target, "lost": lost, "lost_s": round(lost * INTERVAL, 3),
                         "silence_s": round(silence, 3),
                         "steps": {s: round(t, 4) for s, t in moved.steps}})
            time.sleep(0.5)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--moves", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for l2pop in (True, False):
        rows = measure(args.moves, l2pop)
        lost = [r["lost"] for r in rows]
        silence = [r["silence_s"] for r in rows]
        report["l2pop" if l2pop else "full-mesh"] = {
            "moves": rows, "lost_median": statistics.median(lost), "lost_max": max(lost),
            "silence_median_s": round(statistics.median(silence), 3), "silence_max_s": max(silence)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for mode, figures in report.items():
        print(f"lab move hv1<->hv2 under a ping every 10 ms ({mode}, {args.moves} moves): "
              f"replies lost median {figures['lost_median']}, worst {figures['lost_max']}; "
              f"longest silence median {figures['silence_median_s']} s, worst "
              f"{figures['silence_max_s']} s")


if __name__ == "__main__":
    main()
