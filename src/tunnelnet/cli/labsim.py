"""``tunnelnet lab sim`` and ``lab sim-demo``: simulations that need no root and no lab up.

The ``lab`` group (:mod:`tunnelnet.cli.lab`) adds them to its commands; a simulated lab that
stays up (``lab up --sim``) is one of its labs instead. Heavy imports happen inside the
commands, so ``tunnelnet --help`` stays fast.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import click

from tunnelnet.cli._matrix import print_matrix as _print_matrix
from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import tunnel_kinds

if TYPE_CHECKING:
    from tunnelnet.lab.sim import SimLab
    from tunnelnet.lab.sim_probe import PingResult
    from tunnelnet.lab.sim_scale import ScaleSpec


def _say(message: str) -> None:
    click.echo(f"  {message}", err=True)


# -- lab sim: the large simulation ---------------------------------------------------------


def _child(spec: ScaleSpec, l2pop: bool, conn: Connection) -> None:
    from tunnelnet.lab import sim_scale

    label = "l2pop" if l2pop else "full mesh"
    try:
        report = sim_scale.run(spec, l2pop=l2pop, progress=lambda m: _say(f"[{label}] {m}"))
        conn.send(report.to_json())
    except TunnelnetError as exc:
        conn.send({"error": str(exc)})
    finally:
        conn.close()


def _run_isolated(spec: ScaleSpec, l2pop: bool) -> dict[str, Any]:
    """One run in a child process of its own, so that its memory figure is its own."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(spec, l2pop, child), daemon=True)
    proc.start()
    child.close()
    try:
        result: dict[str, Any] = parent.recv()
    except EOFError:
        proc.join()
        raise TunnelnetError(f"the simulation ({'l2pop' if l2pop else 'full mesh'}) died "
                             f"with exit status {proc.exitcode}") from None
    proc.join()
    if "error" in result:
        raise TunnelnetError(str(result["error"]))
    return result


def _spread(d: dict[str, Any]) -> str:
    return f"{d['min']} / {d['mean']} / {d['max']}"


def _print_scale(spec: ScaleSpec, runs: Sequence[dict[str, Any]]) -> None:
    first = runs[0]
    click.echo(f"simulated cloud: {first['hypervisors']} hypervisors, {first['tenants']} "
               f"tenants, {first['networks']} {spec.network_type} networks, {first['vms']} VMs "
               f"({spec.placement} placement, seed {spec.seed}); one process per run, no root")
    labels = ["l2pop" if r["l2pop"] else "full mesh" for r in runs]
    rows: list[tuple[str, list[str]]] = [
        ("agents up (register, bridges)", [f"{r['seconds_agents_start']:.1f} s" for r in runs]),
        ("controller writes (nets, ports)",
         [f"{r['seconds_controller_writes']:.1f} s" for r in runs]),
        ("converge (all agents programmed)",
         [f"{r['seconds_converge']:.1f} s, {r['passes']} passes" for r in runs]),
        ("  of which CPU", [f"{r['cpu_seconds_converge']:.1f} s" for r in runs]),
        ("VM ports ACTIVE", [f"{r['ports_active']} / {r['vms']}" for r in runs]),
        ("same-network pairs by trace",
         [f"{r['pairs_reached']} / {r['pairs_checked']} reached" for r in runs]),
        ("different-network pairs by trace",
         [f"{r['isolation_held']} / {r['isolation_checked']} isolated" for r in runs]),
        ("reachability checks took", [f"{r['seconds_reachability']:.1f} s" for r in runs]),
        ("time to converge and verify",
         [f"{r['seconds_converge'] + r['seconds_reachability']:.1f} s" for r in runs]),
        ("total run (CPU)",
         [f"{r['seconds_total']:.1f} s ({r['cpu_seconds_total']:.1f} s)" for r in runs]),
        ("memory RSS (peak)", [f"{r['rss_mb']:.0f} MiB ({r['peak_rss_mb']:.0f})" for r in runs]),
        ("flows per hypervisor min/mean/max",
         [_spread(r["flows_per_hypervisor"]) for r in runs]),
        ("  of which br-tun", [_spread(r["br_tun_flows_per_hypervisor"]) for r in runs]),
        ("tunnels per hypervisor min/mean/max",
         [_spread(r["tunnels_per_hypervisor"]) for r in runs]),
    ]
    width = max(len(name) for name, _ in rows) + 2
    col = max(24, *(len(v) + 2 for _, vals in rows for v in vals))
    click.echo(" " * width + "".join(f"{label:<{col}}" for label in labels))
    for name, vals in rows:
        click.echo(f"{name:<{width}}" + "".join(f"{v:<{col}}" for v in vals))
    if first["pairs_sampled"]:
        click.echo(f"reachability: {first['pairs_same_network_total']} ordered same-network "
                   f"pairs exist; a sample of {first['pairs_checked']} was traced (every "
                   "network at least once). Use --pairs to trace more.")
    else:
        click.echo("reachability: every same-network pair was traced.")
    click.echo("isolation: pairs of VMs of different networks, half of them with the same IP "
               "address; a pair holds when the echo to the other VM's MAC never reaches it.")
    for r in runs:
        for line in r["failures"]:
            click.echo(f"FAILED ({'l2pop' if r['l2pop'] else 'full mesh'}): {line}")


@click.command("sim")
@click.option("--hypervisors", default=50, show_default=True, help="Hypervisors to simulate.")
@click.option("--tenants", default=10, show_default=True, help="Tenants (projects).")
@click.option("--vms", default=500, show_default=True, help="VMs, spread over the networks "
              "in turn and over the hypervisors at random.")
@click.option("--networks-per-tenant", default=2, show_default=True)
@click.option("--network-type", type=click.Choice((*tunnel_kinds.names(), "mixed")),
              default="vxlan", show_default=True)
@click.option("--l2pop/--no-l2pop", default=None,
              help="Only with l2population, or only without (full mesh). Default: both, "
                   "one after the other, each in a process of its own.")
@click.option("--pairs", default=400, show_default=True,
              help="Same-network VM pairs to check by trace at most (all if fewer exist).")
@click.option("--isolation-pairs", default=100, show_default=True,
              help="Pairs of VMs of different networks to check stay apart.")
@click.option("--placement", type=click.Choice(["random", "tenant"]), default="random",
              show_default=True,
              help="random: VMs on any hypervisor; tenant: each tenant's VMs on its own slice "
                   "of hypervisors (where l2pop saves the most tunnels).")
@click.option("--seed", default=1, show_default=True, help="Seed of the generated topology.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sim(hypervisors: int, tenants: int, vms: int, networks_per_tenant: int,
        network_type: str, l2pop: bool | None, pairs: int, isolation_pairs: int,
        placement: str, seed: int, as_json: bool) -> int:
    """A large cloud simulated in one process, no root: the real controller code, one real
    agent and real bridges per hypervisor, frames followed by trace.

    Reports the time to converge (every agent programmed, every VM port ACTIVE, every sampled
    VM pair of a network reachable by trace), memory (RSS), flows and tunnels per hypervisor,
    with and without l2population. Exits 1 if anything failed.

    Example: tunnelnet lab sim --hypervisors 1000 --tenants 100 --vms 20000
    """
    from tunnelnet.lab.sim_scale import ScaleSpec

    spec = ScaleSpec(hypervisors=hypervisors, tenants=tenants, vms=vms,
                     networks_per_tenant=networks_per_tenant, network_type=network_type,
                     seed=seed, pairs=pairs, isolation_pairs=isolation_pairs,
                     placement=placement)
    spec.check()
    modes = [True, False] if l2pop is None else [l2pop]
    runs = [_run_isolated(spec, mode) for mode in modes]
    if as_json:
        click.echo(json.dumps({"spec": {"hypervisors": hypervisors, "tenants": tenants,
                                        "vms": vms, "networks_per_tenant": networks_per_tenant,
                                        "network_type": network_type, "seed": seed,
                                        "placement": placement},
                               "runs": runs}, indent=2))
    else:
        _print_scale(spec, runs)
    return 0 if all(r["ok"] for r in runs) else 1


# -- lab sim-demo: the demo without root ---------------------------------------------------


def _section(title: str) -> None:
    click.echo("")
    click.echo(f"== {title}")


def print_matrix(names: Sequence[str], results: Sequence[PingResult]) -> None:
    _print_matrix(names, results, how=" by trace")


def print_status(lab: SimLab) -> None:
    from tunnelnet.cli._status import print_status as print_table
    from tunnelnet.lab.sim_server import HANDLERS

    print_table(HANDLERS["status"](lab, {}), simulated=True)


def print_trace(lab: SimLab, src_name: str, dst_name: str) -> bool:
    """``tunnelnet trace SRC DST --explain``'s walk and words, over this process's lab."""
    from tunnelnet.trace.render import to_text

    journey = lab.walker().journey(src_name, dst_name)
    click.echo(to_text(journey, explain=True), nl=False)
    return journey.outcome.delivered


@click.command("sim-demo")
@click.argument("topology", default="examples/demo.toml",
                type=click.Path(exists=True, dir_okay=False))
@click.option("--l2pop/--no-l2pop", default=True, show_default=True)
def sim_demo(topology: str, l2pop: bool) -> int:
    """The demo without root: TOPOLOGY's controller, agents and bridges simulated in one
    process; shows convergence, the reachability matrix by trace, one packet's way across a
    tunnel and the br-tun flows of its hypervisor. Exits 1 on any surprise."""
    from tunnelnet.lab.sim import SimLab
    from tunnelnet.lab.topology import load

    topo = load(topology)
    _section(f"Simulating the data centre of {topology} (one process, no root)")
    lab = SimLab(topo, l2pop=l2pop, progress=_say)
    report = lab.up()
    if not report.converged:
        raise TunnelnetError(f"the agents did not converge in {report.passes} passes")
    _section("Who is where (as 'tunnelnet lab status' shows it)")
    print_status(lab)
    _section("Reachability: every VM pings every other, followed by trace")
    click.echo("Two tenants may use the same addresses. A pair counts as reached only if the "
               "destination VM itself answered ARP and the echo; an equal address in another "
               "tenant never counts.")
    results = lab.verify()
    print_matrix(sorted(lab.vms), results)
    in_order = [lab.vms[vm.name] for vm in topo.vms]  # the file's order, as the lab demo
    cross = next(((a, b) for a in in_order for b in in_order
                  if a.network == b.network and a.hypervisor != b.hypervisor), None)
    if cross is not None:
        src, dst = cross
        _section(f"One packet's way from {src.name} ({src.hypervisor}) to {dst.name} "
                 f"({dst.hypervisor})")
        print_trace(lab, src.name, dst.name)
        _section(f"The flows of br-tun on {src.hypervisor}")
        for line in lab.switches[src.hypervisor].bridge("br-tun").dump_flows():
            click.echo(line)
    _section("Next")
    click.echo("  tunnelnet lab up --sim " + topology + "   (keeps it up: lab status, verify, "
               "ping, trace, down)")
    click.echo("  tunnelnet lab sim --hypervisors 1000 --tenants 100 --vms 20000")
    click.echo("  sudo make demo   (the real lab: namespaces, sockets, VXLAN and GRE on the wire)")
    sys.stdout.flush()
    return 1 if any(r.surprise for r in results) else 0
