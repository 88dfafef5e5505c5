"""CPU per request of the agents' two hottest requests, controller and client side.

    python -m bench.cp_requests [--requests 1000] [--ports 100]

One `tunnelnet server` on SQLite, one network with `--ports` ports, then `--requests` long
polls answered at once (`GET /v2.0/events` bringing every port's event, as a host with a port
on that network) and as many listings of the network (`GET /v2.0/watch/ports`), each from
one client thread with the real HTTP client (`tunnelnet.client.http.Client`). Measured as CPU
seconds (the controller's from /proc, the client's from its own process time), which a
busy, shared machine disturbs far less than wall time: what a request costs, not how long it
waited. Prints one line per request kind. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.cp_procs import ADMIN_TOKEN, AGENT_TOKEN, Processes, cost, start_controller
from tunnelnet.client.http import Client


def _per_request(pid: int, call: Callable[[], object], count: int) -> tuple[float, float]:
    """Milliseconds of controller and client CPU per call."""
    call()  # warm: the first answer pays for caches and connections
    server0, client0 = cost(pid).cpu_s, time.process_time()
    for _ in range(count):
        call()
    server1, client1 = cost(pid).cpu_s, time.process_time()
    return 1000 * (server1 - server0) / count, 1000 * (client1 - client0) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=100)
    args = parser.parse_args()
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="tn-cpreq-") as workdir:
        try:
            ctl = start_controller(procs, Path(workdir), "controller",
                                   f"sqlite:{workdir}/controller.db")
            with Client(ctl.url, ADMIN_TOKEN) as admin, Client(ctl.url, AGENT_TOKEN) as agent:
                net = admin.create("network", name="bench", project_id="bench")
                admin.create("subnet", network_id=net["id"], cidr="10.0.0.0/16", ip_version=4,
                             project_id="bench")
                admin.create_many("port", [{"network_id": net["id"], "project_id": "bench",
                                            "binding:host_id": f"hv-{i}"}
                                           for i in range(args.ports)])
                _, revision = admin.list_with_revision("port")
                first = revision - args.ports
                kinds: dict[str, Callable[[], object]] = {
                    f"long poll, {args.ports} events": lambda: agent.events(
                        first, timeout=0, host="hv-0"),
                    f"network listing, {args.ports} ports": lambda: agent.network_listing(
                        net["id"], revision),
                }
                for name, call in kinds.items():
                    server_ms, client_ms = _per_request(ctl.proc.pid, call, args.requests)
                    print(f"{name}: controller {server_ms:.2f} ms CPU, "
                          f"client {client_ms:.2f} ms CPU per request")
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
