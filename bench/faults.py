"""Issue 21's faults at full size, on one namespace lab (tests/support/faults.py does each one;
tests/adversarial/test_faults_lab.py runs them small and asserts the goals).

Tenants red (VXLAN) and blue (GRE) with equal addresses ping across hv1 and hv2 every 10 ms;
hv1 carries ``--ports`` bound vNICs besides. In turn: kill -9 of hv1's agent and a start of
it (plain, with every answer of the controller 30 s late through a relay, with the controller
killed before and started 5 s after it); kill -9 of hv1's vswitchd and a start of it (bridges
fail-secure, cross-tenant frames in tcpdump on every VM, how soon the agent reprograms, the
forwarding gap as ping's longest silence); ``--seeds`` rounds of the controller and every
agent killed and started in a random order with random delays while ports come and go, then
each hypervisor's flood lists against the hypervisors hosting each network; ``--cycles``
deletions and re-plugs of one VM's vNIC under a new ofport, each followed by a search for
flows naming a port that is not there. A benchmark: it asserts nothing. Root.

    python -m bench.faults [--ports 200] [--seeds 20] [--cycles 100] [--late 30] [--json]
    python -m bench.faults --only vswitchd --repeat 5 [--ports 200]
    python -m bench.faults --only start-order --seed 8 --seed 3 [--repeat 2] [--ports 200]

Writes bench/results/faults.json ({"section": "faults", "rows": [...]}) beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support.faults import (
    AgentVariant,
    Row,
    agent_restart,
    bind_ports,
    replug_cycles,
    start_order,
    vswitchd_restart,
)
from support.faults_lab import FaultLab

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
COLUMNS = ("what", "amount", "lost", "measured", "goal", "passed")


def run(args: argparse.Namespace, work: Path, say: Any) -> list[Row]:
    lab = FaultLab(work / "lab", f"tnF{os.getpid() % 10000}")
    rows: list[Row] = []
    try:
        lab.up()
        started = time.monotonic()
        bind_ports(lab, "hv1", args.ports, timeout=max(120.0, args.ports * 1.5))
        say(f"{args.ports} ports bound on hv1 in {time.monotonic() - started:.1f} s")

        def add(row: Row) -> None:
            rows.append(row)
            say(f"{'PASS' if row.passed else 'FAIL'} {row.what}: {row.measured} "
                f"(lost {row.lost})")

        if args.only == "vswitchd":
            for round_ in range(args.repeat):
                say(f"round {round_ + 1}: load average {os.getloadavg()[0]:.1f}")
                (work / f"round{round_}").mkdir()
                for row in vswitchd_restart(lab, work / f"round{round_}", ports=args.ports):
                    add(row)
            return rows
        if args.only == "start-order":
            # one replay of chosen seeds (a failure at full size, replayed without the
            # hour of faults before it): each seed --repeat times, in the order given
            for _ in range(args.repeat):
                for seed in args.seed or range(1, args.seeds + 1):
                    add(start_order(lab, seed))
            return rows
        add(agent_restart(lab, AgentVariant.PLAIN, ports=args.ports))
        add(agent_restart(lab, AgentVariant.LATE, delay=args.late, ports=args.ports))
        add(agent_restart(lab, AgentVariant.CONTROLLER_DOWN, outage=5.0, ports=args.ports))
        for row in vswitchd_restart(lab, work, ports=args.ports):
            add(row)
        orders = [start_order(lab, seed) for seed in range(1, args.seeds + 1)]
        for row in orders:
            say(f"  {row.what}: {row.measured}")
        settled = [o for o in orders if o.passed]
        worst = max((float(o.details["settle_seconds"]) for o in settled), default=0.0)
        add(Row("agents and controller in random order, ports created/deleted meanwhile",
                f"{args.seeds} seeds", "-",
                f"{len(settled)}/{args.seeds} settled right; slowest {worst:.1f} s after the "
                "last start and port change", "flood list per network = hypervisors hosting it",
                len(settled) == args.seeds,
                {"seeds": [o.document() for o in orders]}))
        add(replug_cycles(lab, args.cycles))
    finally:
        down = lab.down()
        if down.returncode != 0:
            say(f"lab down failed: {down.stdout}{down.stderr}")
    return rows


def table(rows: list[Row]) -> str:
    cells = [[str(getattr(r, c)) for c in COLUMNS] for r in rows]
    widths = [min(60, max(len(c), *(len(row[i]) for row in cells)))
              for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


# what tests/adversarial/test_faults_lab.py runs: minutes, not the full size's hour
QUICK: dict[str, float] = {"ports": 20, "seeds": 3, "cycles": 10, "late": 12.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=200, help="vNICs bound on hv1")
    parser.add_argument("--seeds", type=int, default=20, help="random start orders")
    parser.add_argument("--cycles", type=int, default=100, help="delete/re-plug cycles")
    parser.add_argument("--late", type=float, default=30.0,
                        help="seconds the controller's answers are held back")
    parser.add_argument("--only", choices=["vswitchd", "start-order"],
                        help="only kill -9 of hv1's vswitchd, or only the random start "
                             "orders (--repeat times)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --only: rounds, one after the other")
    parser.add_argument("--seed", type=int, action="append",
                        help="with --only start-order: this seed (repeatable; default: "
                             "1..--seeds)")
    parser.add_argument("--json", action="store_true", help="print the JSON, not the table")
    parser.add_argument("--quick", action="store_true",
                        help=f"the CI test's sizes: {QUICK['ports']} ports, {QUICK['seeds']} "
                             f"seeds, {QUICK['cycles']} cycles, answers {QUICK['late']:.0f} s "
                             "late (bench.resilience --quick asks for it)")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, type(getattr(args, name))(value))  # ints stay ints
    if os.geteuid() != 0:
        print("bench.faults needs root (namespaces)", file=sys.stderr)
        return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tn-faults-") as work:
        rows = run(args, Path(work), lambda line: print(line, file=sys.stderr, flush=True))
    document = {"section": "faults", "rows": [r.document() for r in rows],
                "command": "python -m bench.faults " + " ".join(argv or sys.argv[1:]),
                "sizes": {"ports": args.ports, "seeds": args.seeds, "cycles": args.cycles,
                          "late_seconds": args.late},
                "started": started, "seconds": time.time() - started}
    results = RESULTS.with_name(f"faults-{args.only}.json") if args.only else RESULTS
    RESULTS.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(document, indent=1, default=str))
    print(json.dumps(document, indent=1, default=str) if args.json else table(rows))
    print(f"wrote {results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
