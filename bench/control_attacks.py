"""The controller's REST API under attack at full size (issue 21), for the resilience table.

Starts a real controller (`tunnelnet server` on SQLite in a temporary directory) and runs
tests/support/control_attacks.py's two attacks at the issue's size: requests with another
project's token, with none and with tokens in a bad form, paced at --rate per second for
--seconds from 32 threads (each must be refused as Neutron refuses it, the server must keep
serving, and the victim's objects must not change); then --ports port creates in parallel on
one network (every address and MAC handed out once, inside the subnet, and the controller's
own listing agreeing). CI runs the same at a small size (tests/adversarial/
test_attacks_control_plane.py). A benchmark: nothing asserts; the rows go to
bench/results/control.json.

    python -m bench.control_attacks [--rate 200] [--seconds 30] [--ports 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support.control_attacks import (
    Creates,
    Hostile,
    hostile_requests,
    parallel_creates,
    refusable,
)
from support.controller import ServerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "control.json"
CIDR = "10.64.0.0/18"  # 16,382 addresses: room for --ports up to that


def hostile_row(result: Hostile, rate: float, seconds: float) -> dict[str, Any]:
    wrong = result.unexpected()
    unsent = result.sent - result.answered - len(result.errors)
    passed = (not result.errors and not wrong and result.server_alive and result.unchanged
              and result.answered >= result.sent - refusable(result))
    return {
        "what": "hostile requests: another project's token, none, malformed tokens",
        "amount": f"{result.sent:,} requests at {rate:g}/s for {seconds:g} s",
        "lost": f"{len(wrong)} answered otherwise than Neutron, {len(result.errors)} broken",
        "measured": f"{result.answered:,} refused in {result.elapsed:.1f} s "
                    f"(statuses {result.statuses()}; {unsent:,} with a header the HTTP client "
                    f"itself will not send); server "
                    f"{'alive' if result.server_alive else 'DEAD'}, victim's objects "
                    f"{'unchanged' if result.unchanged else 'CHANGED'}",
        "goal": "all refused (401, or 404 as for no such id), server keeps serving",
        "passed": passed,
    }


def creates_row(result: Creates) -> dict[str, Any]:
    created = result.statuses.get(201, 0)
    passed = (created == result.ports and result.unique and result.in_subnet
              and result.listing_agrees)
    return {
        "what": "port creates in parallel on one network",
        "amount": f"{result.ports:,} creates from 32 threads",
        "lost": f"{result.ports - created} not created (statuses {dict(result.statuses)})",
        "measured": f"{len(set(result.addresses)):,} distinct addresses, "
                    f"{len(set(result.macs)):,} distinct MACs in {result.elapsed:.1f} s; "
                    f"{len(result.duplicates())} duplicates; listing "
                    f"{'agrees' if result.listing_agrees else 'DIFFERS'}",
        "goal": "every address and MAC once, in the subnet",
        "passed": passed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="hostile requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they go on")
    parser.add_argument("--ports", type=int, default=10_000,
                        help=f"parallel port creates on one {CIDR} network")
    args = parser.parse_args(argv)
    if not 1 <= args.ports <= 16_000:
        parser.error(f"--ports {args.ports}: 1 to 16000 (the {CIDR} subnet)")
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tn-control-attacks-") as work, \
            ServerProcess(Path(work) / "state.db") as server:
        print(f"hostile requests: {args.rate:g}/s for {args.seconds:g} s ...", file=sys.stderr,
              flush=True)
        hostile = hostile_requests(server, args.rate, args.seconds)
        print(f"{args.ports:,} parallel port creates ...", file=sys.stderr, flush=True)
        creates = parallel_creates(server, args.ports, CIDR)
    rows = [hostile_row(hostile, args.rate, args.seconds), creates_row(creates)]
    document = {"section": "control", "rows": rows,
                "command": "python -m bench.control_attacks " + " ".join(argv or sys.argv[1:]),
                "sizes": {"rate": args.rate, "seconds": args.seconds, "ports": args.ports},
                "started": started, "seconds": time.time() - started}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=1))
    for row in rows:
        print(f"{'PASS' if row['passed'] else 'FAIL'} {row['what']}: {row['measured']} "
              f"({row['amount']}; {row['lost']})")
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
