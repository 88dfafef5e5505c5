"""``tunnelnet lab sim`` and ``lab sim-demo``: the lab's simulation mode (no root needed).

Registered into the ``lab`` group by :func:`register`. Heavy imports happen inside the
commands, so ``tunnelnet --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
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
    statuses = lab.port_statuses()
    click.echo("hypervisors:")
    for hv in lab.topo.hypervisors:
        tunnels = ", ".join(f"{p.name} ({p.options['remote_ip']})" for p in lab.tunnels(hv.name))
        click.echo(f"  {hv.name:<8} {hv.ip:<15} agent alive  tunnels: {tunnels or '-'}")
    click.echo("VMs:")
    for vm in sorted(lab.vms.values(), key=lambda v: v.name):
        click.echo(f"  {vm.name:<8} {vm.tenant:<8} {vm.network:<10} {vm.hypervisor:<6} "
                   f"{vm.ip:<15} {vm.mac}  MTU {vm.mtu}  {statuses.get(vm.port_id, '?')}")


def trace_lines(lab: SimLab, src_name: str, dst_name: str) -> tuple[bool, list[str]]:
    """The echo request's way from src to dst, bridge by bridge, as ofproto/trace prints it."""
    from tunnelnet.lab.sim_probe import ECHO_REQUEST, icmp_frame, send

    src, dst = lab.vm(src_name), lab.vm(dst_name)
    walk = send(lab.fabric, src, icmp_frame(src.mac, dst.mac, src.ip, dst.ip, ECHO_REQUEST),
                keep_path=True)
    ending = next((e for e in walk.endings if e.accepted and e.vm == dst.name), None)
    if ending is None:
        return False, [f"{src.name} -> {dst.name}: not reached: {walk.summary()}"]
    lines = []
    for hop in ending.path:
        lines.append(f"--- {hop.hypervisor} {hop.bridge} (in on {hop.in_port})")
        trace = lab.switches[hop.hypervisor].bridge(hop.bridge).trace(hop.flow_text())
        lines.append(trace.to_text(explain=True).rstrip())
    lines.append(f"--- delivered to {dst.name}'s vNIC {ending.port} on {ending.hypervisor}")
    return True, lines


def print_trace(lab: SimLab, src_name: str, dst_name: str) -> bool:
    reached, lines = trace_lines(lab, src_name, dst_name)
    for line in lines:
        click.echo(line)
    return reached


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


# -- a simulated lab that stays up: lab up --sim, and the lab commands against it ----------


def _serve(directory: Path, topology: str, l2pop: bool, arp_responder: bool) -> int:
    import secrets

    from tunnelnet.lab.sim import SimLab, sim_config
    from tunnelnet.lab.sim_server import SimServer, record
    from tunnelnet.lab.state import StateFile
    from tunnelnet.lab.topology import load
    from tunnelnet.server.runner import BackgroundServer

    topo = load(topology)
    file = StateFile(directory)
    if file.exists():
        raise TunnelnetError(f"a lab is already up (state in {file.path}); take it down first "
                             "with 'tunnelnet lab down'")
    directory.mkdir(parents=True, exist_ok=True)
    # the controller also serves its REST API (loopback), so the client commands and
    # 'lab env' work against the simulated cloud; the agents read it in-process
    token = secrets.token_hex(16)
    api = BackgroundServer(sim_config(topo).with_overrides(
        host="127.0.0.1", port=0, db=":memory:", admin_token=token)).start()
    try:
        lab = SimLab(topo, l2pop=l2pop, arp_responder=arp_responder, progress=_say,
                     controller=api.controller)
        report = lab.up()
        if not report.converged:
            raise TunnelnetError(f"the agents did not converge in {report.passes} passes")

        def save() -> None:
            record(lab, directory, topology, server_url=api.url, admin_token=token)

        save()

        def trace(lab_: SimLab, args: dict[str, Any]) -> dict[str, Any]:
            reached, lines = trace_lines(lab_, str(args.get("src")), str(args.get("dst")))
            return {"reached": reached, "text": "\n".join(lines)}

        _say(f"simulated lab is up: {len(lab.switches)} hypervisors, {len(lab.vms)} VMs; "
             f"lab commands on {directory / 'sim.sock'}, controller API on {api.url}")
        try:
            SimServer(lab, directory, {"trace": trace}, after=save).serve()
        finally:
            file.remove()
    finally:
        api.stop()
    return 0


@click.command("sim-serve", hidden=True)
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@click.option("--l2pop/--no-l2pop", default=True)
@click.option("--arp-responder", is_flag=True)
@click.pass_obj
def sim_serve(directory: Path, topology: str, l2pop: bool, arp_responder: bool) -> int:
    """Hold a simulated lab in the foreground and answer the lab commands (lab up --sim)."""
    from tunnelnet.lab.sim_server import usable_dir

    return _serve(usable_dir(directory), topology, l2pop, arp_responder)


def up_sim(directory: Path, topology: str, l2pop: bool, arp_responder: bool,
           foreground: bool) -> int:
    from tunnelnet.lab import processes
    from tunnelnet.lab.sim_server import SimClient, usable_dir
    from tunnelnet.lab.state import StateFile

    directory = usable_dir(directory)
    if StateFile(directory).exists():
        raise TunnelnetError(f"a lab is already up (state in {directory / 'state.json'}); "
                             "take it down first with 'tunnelnet lab down'")
    if foreground:
        click.echo(f"lab up --sim: {topology} in the foreground (Ctrl-C ends it; run "
                   f"directory {directory})", err=True)
        return _serve(directory, topology, l2pop, arp_responder)
    argv = processes.tunnelnet_argv("lab", "--dir", str(directory), "sim-serve", topology,
                                    "--l2pop" if l2pop else "--no-l2pop",
                                    *(["--arp-responder"] if arp_responder else []))
    log_path = directory / "sim.log"
    directory.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    click.echo(f"lab up --sim: {topology} (run directory {directory}, log {log_path})",
               err=True)
    proc = processes.spawn(argv, netns=None, log_path=log_path)
    client = SimClient(directory, timeout=5.0)

    def ready() -> bool:
        if not (directory / "sim.sock").exists():
            return False
        try:
            client.call("status")
            return True
        except TunnelnetError:
            return False

    processes.wait_until(ready, "simulated lab", timeout=3600.0, proc=proc, log_path=log_path)
    status = SimClient(directory).call("status")
    click.echo(f"simulated lab is up: {len(status['hypervisors'])} hypervisors, "
               f"{len(status['vms'])} VMs (pid {proc.pid}). Try 'tunnelnet lab status', "
               "'lab verify', 'lab ping A B', 'lab sim-trace A B', 'lab down'.")
    return 0


def _down(directory: Path) -> int:
    from tunnelnet.lab import processes
    from tunnelnet.lab.sim_server import SimClient
    from tunnelnet.lab.state import StateFile

    file = StateFile(directory)
    state = file.load()
    try:
        SimClient(directory, timeout=10.0).call("stop")
    except TunnelnetError as exc:
        click.echo(f"  the simulation did not answer ({exc}); stopping it", err=True)
    for proc in state.processes:
        if proc.name == "sim":
            processes.stop(proc.pid)
    file.remove()
    for name in ("sim.sock", "sim.log"):
        (directory / name).unlink(missing_ok=True)
    click.echo("simulated lab is down")
    return 0


def _status(directory: Path, as_json: bool) -> int:
    from tunnelnet.lab.sim_server import SimClient

    data = SimClient(directory).call("status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return 0
    click.echo("hypervisors (simulated):")
    for hv in data["hypervisors"]:
        alive = "alive" if hv["agent_alive"] else "DEAD"
        click.echo(f"  {hv['name']:<8} {hv['ip']:<15} agent {alive:<5} tunnels: "
                   f"{', '.join(hv['tunnels']) or '-'}")
    click.echo("VMs:")
    for vm in data["vms"]:
        click.echo(f"  {vm['name']:<8} {vm['tenant']:<8} {vm['network']:<10} "
                   f"{vm['hypervisor']:<6} {vm['ip']:<15} {vm['mac']}  MTU {vm['mtu']}  "
                   f"{vm['port_status']}")
    return 0


def _verify(directory: Path, as_json: bool) -> int:
    from tunnelnet.lab.sim_probe import PingResult
    from tunnelnet.lab.sim_server import SimClient

    data = SimClient(directory).call("verify")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        results = [PingResult(p["src"], p["dst"], p["expected"], p["reached"], None,
                              p["detail"]) for p in data["pairs"]]
        print_matrix(sorted({p["src"] for p in data["pairs"]}), results)
    return 1 if data["surprises"] else 0


def _ping(directory: Path, src: str, dst: str, as_json: bool) -> int:
    from tunnelnet.lab.sim_server import SimClient

    data = SimClient(directory).call("ping", src=src, dst=dst)
    if as_json:
        click.echo(json.dumps(data))
    elif data["reached"]:
        click.echo(f"{src} -> {dst} ({data['dst_ip']}): reached (by trace): {data['detail']}")
    else:
        click.echo(f"{src} -> {dst} ({data['dst_ip']}): NOT reached: {data['detail']}")
    return 0 if data["reached"] else 1


@click.command("sim-trace")
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def sim_trace(directory: Path, src: str, dst: str, as_json: bool) -> int:
    """A simulated lab: SRC's echo request to DST, bridge by bridge (ofproto/trace style).
    Exits 1 when it does not reach DST (the text then says where its copies ended)."""
    from tunnelnet.lab.sim_server import SimClient

    data = SimClient(_need_sim(directory)).call("trace", src=src, dst=dst)
    click.echo(json.dumps(data, indent=2) if as_json else data["text"])
    return 0 if data["reached"] else 1


@click.command("sim-flows")
@click.argument("hypervisor")
@click.argument("bridge", default="br-tun")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of flow lines).")
@click.pass_obj
def sim_flows(directory: Path, hypervisor: str, bridge: str, as_json: bool) -> int:
    """A simulated lab: the flows of BRIDGE (default br-tun) on HYPERVISOR, as dump-flows."""
    from tunnelnet.lab.sim_server import SimClient

    lines = SimClient(_need_sim(directory)).call("flows", hypervisor=hypervisor, bridge=bridge)
    if as_json:
        click.echo(json.dumps(lines, indent=2))
    for line in [] if as_json else lines:
        click.echo(line)
    return 0


def _need_sim(directory: Path) -> Path:
    from tunnelnet.lab.sim_server import find_sim

    found = find_sim(directory)
    if found is None:
        raise TunnelnetError("no simulated lab is up; start one with "
                             "'tunnelnet lab up --sim FILE'")
    return found


def _wrap(group: click.Group, name: str, handler: Callable[..., int]) -> None:
    """Let an existing lab command answer for a simulated lab when one is up."""
    from tunnelnet.lab.sim_server import find_sim

    command = group.commands.get(name)
    if command is None or command.callback is None:
        return
    original = command.callback

    @functools.wraps(original)
    def callback(*args: Any, **kwargs: Any) -> Any:
        directory = click.get_current_context().find_object(Path)
        found = find_sim(directory) if directory is not None else None
        if found is not None:
            return handler(found, **kwargs)
        return original(*args, **kwargs)

    command.callback = callback


def _exec_refused(_directory: Path, **_kwargs: Any) -> int:
    raise TunnelnetError("a simulated lab has no VM processes to run commands in; use "
                         "'lab ping', 'lab sim-trace' or 'lab verify'")


def _add_sim_to_up(group: click.Group) -> None:
    command = group.commands.get("up")
    if command is None or command.callback is None:
        return
    command.params.append(click.Option(
        ["--sim"], is_flag=True,
        help="Simulate it instead, no root: the same controller, agents and switches in one "
             "background process wired in memory; lab status, verify, ping, sim-trace, "
             "sim-flows and down work against it."))
    command.params.append(click.Option(
        ["--foreground"], is_flag=True,
        help="With --sim: hold the simulation in this terminal (Ctrl-C ends it)."))
    original = command.callback

    @functools.wraps(original)
    def callback(*args: Any, **kwargs: Any) -> Any:
        sim, foreground = kwargs.pop("sim", False), kwargs.pop("foreground", False)
        if sim:
            directory = click.get_current_context().find_object(Path) or Path(".")
            return up_sim(directory, kwargs["topology"], kwargs.get("l2pop", True),
                          kwargs.get("arp_responder", False), foreground)
        if foreground:
            raise click.UsageError("--foreground goes with --sim")
        return original(*args, **kwargs)

    command.callback = callback


def _add_vm(directory: Path, name: str, network: str, hypervisor: str, ip: str | None,
            **_kwargs: Any) -> int:
    from tunnelnet.lab.sim_server import SimClient

    vm = SimClient(directory).call("add-vm", name=name, network=network,
                                   hypervisor=hypervisor, ip=ip)
    click.echo(f"{vm['name']}: {vm['ip']} {vm['mac']} on {vm['hypervisor']} "
               f"({vm['tenant']}/{vm['network']}), port {vm['port_status']}")
    return 0


def _daemon(op: str) -> Callable[..., int]:
    def handler(directory: Path, daemon: str, **_kwargs: Any) -> int:
        from tunnelnet.lab.sim_server import SimClient

        click.echo(SimClient(directory).call(op, daemon=daemon))
        return 0
    return handler


def register(group: click.Group) -> None:
    """Add the simulation commands to the ``lab`` group, and let ``up --sim``, ``status``,
    ``verify``, ``ping``, ``add-vm``, ``stop``/``start`` (agents), ``env`` and ``down``
    serve a simulated lab (``exec`` says why it cannot)."""
    for command in (sim, sim_demo, sim_serve, sim_trace, sim_flows):
        group.add_command(command)
    _add_sim_to_up(group)
    _wrap(group, "down", lambda d, **_k: _down(d))
    _wrap(group, "status", lambda d, as_json=False, **_k: _status(d, as_json))
    _wrap(group, "verify", lambda d, as_json=False, **_k: _verify(d, as_json))
    _wrap(group, "ping", lambda d, src, dst, as_json=False, **_k: _ping(d, src, dst, as_json))
    _wrap(group, "exec", _exec_refused)
    _wrap(group, "add-vm", _add_vm)
    _wrap(group, "stop", _daemon("stop-agent"))
    _wrap(group, "start", _daemon("start-agent"))
