"""``tunnelnet lab``: a small data centre on this machine, from a topology file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from tunnelnet.cli._matrix import print_matrix
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import probe
from tunnelnet.lab.state import StateFile, lab_dir
from tunnelnet.packet import tunnel_kinds


class LabError(TunnelnetError):
    """The lab cannot do what was asked."""


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (network namespaces, veths, raw sockets); "
                       "run it with sudo, or use 'tunnelnet lab sim' which needs none")


def _say(message: str) -> None:
    click.echo(f"  {message}", err=True)


@click.group("lab")
@click.option("--dir", "directory", envvar="TUNNELNET_LAB_DIR", default=None,
              help="Run directory of the lab (env TUNNELNET_LAB_DIR; default "
                   "/run/tunnelnet-lab).")
@click.pass_context
def cli(ctx: click.Context, directory: str | None) -> None:
    """Build, inspect and remove a lab: an underlay switch, hypervisors and tenant VMs in
    network namespaces, with the controller, a vswitchd and an agent per hypervisor."""
    ctx.obj = lab_dir(directory)


@cli.command("up")
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@click.option("--l2pop/--no-l2pop", default=True, show_default=True,
              help="Tunnels and forwarding entries from the controller (l2population).")
@click.option("--arp-responder", is_flag=True, help="Answer ARP in br-tun (needs l2pop).")
@click.pass_obj
def up(directory: Path, topology: str, l2pop: bool, arp_responder: bool) -> None:
    """Build the lab described by TOPOLOGY (a TOML file; see examples/demo.toml)."""
    _need_root("lab up")
    from tunnelnet.lab.runner import LabRunner

    click.echo(f"lab up: {topology} (run directory {directory})", err=True)
    state = LabRunner(directory, _say).up(topology, l2pop=l2pop, arp_responder=arp_responder)
    click.echo(f"lab is up: {len(state.hypervisors)} hypervisors, {len(state.vms)} VMs. "
               "Try 'tunnelnet lab status', 'tunnelnet lab verify', 'tunnelnet lab down'.")


@cli.command("down")
@click.pass_obj
def down(directory: Path) -> None:
    """Stop every daemon and remove every namespace the lab made (also after a crash)."""
    _need_root("lab down")
    from tunnelnet.lab.runner import LabRunner

    if not StateFile(directory).exists():
        click.echo(f"no lab is up (nothing recorded in {directory})")
        return
    LabRunner(directory, _say).down()
    click.echo("lab is down: nothing left behind")


@cli.command("env")
@click.pass_obj
def env(directory: Path) -> None:
    """Print shell exports that point the tunnelnet client at the lab's controller:
    eval $(tunnelnet lab env); tunnelnet network list"""
    state = StateFile(directory).load()
    click.echo(f"export TUNNELNET_URL={state.server_url} TUNNELNET_TOKEN={state.admin_token}")


@cli.command("add-vm")
@click.argument("name")
@click.option("--network", required=True, help="Network (by its name in the topology).")
@click.option("--hypervisor", required=True, help="Hypervisor to boot it on.")
@click.option("--ip", default=None, help="Fixed address (default: the next free one).")
@click.pass_obj
def add_vm(directory: Path, name: str, network: str, hypervisor: str, ip: str | None) -> None:
    """Boot one more VM in the running lab: a port on the controller, a namespace, a vNIC on
    br-int. Watch the agents program it (and, with l2pop, tunnels appear)."""
    _need_root("lab add-vm")
    from tunnelnet.lab.runner import LabRunner
    from tunnelnet.lab.topology import Vm

    runner = LabRunner(directory, _say)
    tenant = str(runner.file.load().networks.get(network, {}).get("tenant", ""))
    vm = runner.add_vm(Vm(name, tenant, network, hypervisor, ip))
    click.echo(f"{vm.name}: {vm.ip} {vm.mac} on {vm.hypervisor} ({vm.tenant}/{vm.network})")


@cli.command("stop")
@click.argument("daemon")
@click.pass_obj
def stop_daemon(directory: Path, daemon: str) -> None:
    """Stop one daemon (server, agent-HV, vswitchd-HV), e.g. to watch forwarding go on
    without its agent or controller. 'lab start DAEMON' brings it back."""
    _need_root("lab stop")
    from tunnelnet.lab.runner import LabRunner

    pid = LabRunner(directory).stop_process(daemon)
    click.echo(f"stopped {daemon} (pid {pid})")


@cli.command("start")
@click.argument("daemon")
@click.pass_obj
def start_daemon(directory: Path, daemon: str) -> None:
    """Start a daemon stopped with 'lab stop' again, with its former command line."""
    _need_root("lab start")
    from tunnelnet.lab.runner import LabRunner

    pid = LabRunner(directory).start_process(daemon)
    click.echo(f"started {daemon} (pid {pid})")


def _status(directory: Path) -> dict[str, Any]:
    from tunnelnet.lab.runner import LabRunner

    runner = LabRunner(directory)
    state = runner.file.load()
    agents: dict[str, bool] = {}
    statuses: dict[str, str] = {}
    try:
        with runner.client(state) as api:
            agents = {a["host"]: bool(a.get("alive")) for a in api.list("agent")}
            statuses = {p["id"]: p["status"] for p in api.list("port")}
    except TunnelnetError as exc:
        click.echo(f"warning: controller not answering: {exc}", err=True)
    tunnels: dict[str, list[str]] = {}
    for hv, info in state.hypervisors.items():
        if info.get("switch") == "ovs":
            from tunnelnet.lab import ovs_host

            try:
                tunnels[hv] = ovs_host.tunnel_ports(Path(info["rundir"]))
            except TunnelnetError:
                tunnels[hv] = []
            continue
        try:
            from tunnelnet.datapath import messages as m
            from tunnelnet.datapath.control import ControlClient

            with ControlClient(Path(info["rundir"]), timeout=5.0) as ctl:
                for bridge in ctl.call(m.Show()):
                    if bridge["name"] == "br-tun":
                        tunnels[hv] = sorted(p["name"] for p in bridge["ports"]
                                             if tunnel_kinds.is_tunnel(p.get("type", "")))
        except TunnelnetError:
            tunnels[hv] = []
    return {
        "hypervisors": [{"name": hv, "ip": info["ip"], "agent_alive": agents.get(hv, False),
                         "switch": info.get("switch", "tunnelnet"),
                         "tunnels": tunnels.get(hv, [])}
                        for hv, info in sorted(state.hypervisors.items())],
        "vms": [{"name": vm.name, "tenant": vm.tenant, "network": vm.network,
                 "hypervisor": vm.hypervisor, "ip": vm.ip, "mac": vm.mac, "mtu": vm.mtu,
                 "port_status": statuses.get(vm.port_id, "UNKNOWN")}
                for vm in sorted(state.vms.values(), key=lambda v: v.name)],
        "networks": state.networks,
    }


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(directory: Path, as_json: bool) -> None:
    """Hypervisors (agent alive, tunnels), VMs (IP, MAC, tenant, network, port status)."""
    data = _status(directory)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("hypervisors:")
    for hv in data["hypervisors"]:
        alive = "alive" if hv["agent_alive"] else "DEAD"
        click.echo(f"  {hv['name']:<8} {hv['ip']:<15} agent {alive:<5} tunnels: "
                   f"{', '.join(hv['tunnels']) or '-'}")
    click.echo("VMs:")
    for vm in data["vms"]:
        click.echo(f"  {vm['name']:<8} {vm['tenant']:<8} {vm['network']:<10} "
                   f"{vm['hypervisor']:<6} {vm['ip']:<15} {vm['mac']}  MTU {vm['mtu']}  "
                   f"{vm['port_status']}")


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("vm")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(directory: Path, vm: str, command: tuple[str, ...]) -> int:
    """Run COMMAND inside VM's namespace: tunnelnet lab exec red1 -- ip addr."""
    _need_root("lab exec")
    state = StateFile(directory).load()
    proc = probe.run_in_vm(probe.vm_of(state, vm), list(command), timeout=3600, capture=False)
    return proc.returncode


@cli.command("ping")
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ping_(directory: Path, src: str, dst: str, as_json: bool) -> int:
    """Ping DST's address from SRC and say whether DST itself answered."""
    _need_root("lab ping")
    state = StateFile(directory).load()
    a, b = probe.vm_of(state, src), probe.vm_of(state, dst)
    result = probe.ping(a, b, count=3)
    reached = result.reached(b)
    if as_json:
        click.echo(json.dumps({"src": src, "dst": dst, "dst_ip": b.ip, "reached": reached,
                               "replied": result.replied, "answered_by": result.answered_by,
                               "rtt_ms": result.rtt_ms}))
    elif reached:
        click.echo(f"{src} -> {dst} ({b.ip}): reached, rtt {result.rtt_ms} ms")
    elif result.replied:
        click.echo(f"{src} -> {dst} ({b.ip}): NOT reached; {result.answered_by} answered for "
                   f"that address in {a.network}")
    else:
        click.echo(f"{src} -> {dst} ({b.ip}): NOT reached (no reply)")
    return 0 if reached else 1


@cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def verify(directory: Path, as_json: bool) -> int:
    """Ping every VM from every other: same network must answer, anything else must not.

    Exits 1 on any surprise."""
    _need_root("lab verify")
    state = StateFile(directory).load()
    cells = probe.verify(state)
    surprises = [c for c in cells if c.surprise]
    if as_json:
        click.echo(json.dumps({"pairs": [{"src": c.src, "dst": c.dst, "expected": c.expected,
                                          "reached": c.reached, "detail": c.detail}
                                         for c in cells],
                               "surprises": len(surprises)}, indent=2))
    else:
        print_matrix(sorted(state.vms), cells)
    sys.stdout.flush()
    return 1 if surprises else 0


def _section(title: str) -> None:
    click.echo("")
    click.echo(click.style(f"== {title}", bold=True))


def _one_bridge_traces(state: Any, src: Any, dst: Any) -> None:
    """Fallback when the end-to-end trace is not installed: hypervisor A's two bridges."""
    from tunnelnet.datapath import messages as m
    from tunnelnet.datapath.control import ControlClient

    rundir = Path(state.hypervisors[src.hypervisor]["rundir"])
    with ControlClient(rundir, timeout=10.0) as ctl:
        ports = {p["name"]: p for p in ctl.call(m.ListPorts("br-int"))}
        tun_ports = {p["name"]: p for p in ctl.call(m.ListPorts("br-tun"))}
        vid = ports[src.tap]["tag"]
        flow = (f"in_port={ports[src.tap]['ofport']},dl_src={src.mac},dl_dst={dst.mac},"
                f"icmp,nw_src={src.ip},nw_dst={dst.ip}")
        click.echo(f"$ tunnelnet ofctl trace br-int '{flow}'   (on {src.hypervisor})")
        click.echo(ctl.call(m.TraceFlow("br-int", flow, explain=True))["text"])
        flow = (f"in_port={tun_ports['patch-int']['ofport']},dl_vlan={vid},dl_src={src.mac},"
                f"dl_dst={dst.mac},icmp,nw_src={src.ip},nw_dst={dst.ip}")
        click.echo(f"$ tunnelnet ofctl trace br-tun '{flow}'   (on {src.hypervisor})")
        click.echo(ctl.call(m.TraceFlow("br-tun", flow, explain=True))["text"])


@cli.command("demo")
@click.argument("topology", default="examples/demo.toml",
                type=click.Path(exists=True, dir_okay=False))
@click.option("--seconds", default=3, show_default=True, help="Length of each iperf3 run.")
@click.pass_context
def demo(ctx: click.Context, topology: str, seconds: int) -> int:
    """The guided tour (make demo): build the lab, prove connectivity and segregation, show a
    trace and br-tun's flows, measure what the tunnel costs, and leave the lab up."""
    directory: Path = ctx.obj
    if os.geteuid() != 0:
        click.echo("The lab needs root (network namespaces). Running the simulation demo, "
                   "which needs none; run 'sudo make demo' for the real one.", err=True)
        sim = cli.commands.get("sim-demo")
        if sim is not None:
            return int(ctx.invoke(sim, topology=topology) or 0)
        from tunnelnet.cli.demo import cli as encap_demo

        ctx.invoke(encap_demo)
        return 0
    from tunnelnet.lab.measure import measure
    from tunnelnet.lab.runner import LabRunner

    runner = LabRunner(directory, _say)
    if runner.file.exists():
        _section("A lab is already up: taking it down first")
        runner.down()
    _section(f"Building the data centre of {topology}")
    state = runner.up(topology)

    _section("Who is where (tunnelnet lab status)")
    ctx.invoke(status, as_json=False)

    _section("Reachability: every VM pings every other (tunnelnet lab verify)")
    click.echo("Two tenants use the same 10.0.0.0/24. A pair counts as reached only if the "
               "destination VM itself answered (its own MAC), so an equal address in another "
               "tenant never counts.")
    verdict = ctx.invoke(verify, as_json=False)

    cross = next(((a, b) for a in state.vms.values() for b in state.vms.values()
                  if a.network == b.network and a.hypervisor != b.hypervisor), None)
    if cross is not None:
        src, dst = cross
        _section(f"One packet's way from {src.name} ({src.hypervisor}) to {dst.name} "
                 f"({dst.hypervisor})")
        import importlib.util

        if importlib.util.find_spec("tunnelnet.cli.trace") is not None:
            # the end-to-end trace, through its own command line as a user would run it
            import subprocess
            import sys

            click.echo(f"$ tunnelnet trace {src.name} {dst.name} --explain")
            subprocess.run([sys.executable, "-m", "tunnelnet", "trace", src.name, dst.name,
                            "--explain"], check=False, timeout=120,
                           env={**os.environ, "TUNNELNET_LAB_DIR": str(directory)})
        else:
            _one_bridge_traces(state, src, dst)

        _section(f"The flows of br-tun on {src.hypervisor}")
        from tunnelnet.datapath import messages as m
        from tunnelnet.datapath.control import ControlClient

        with ControlClient(Path(state.hypervisors[src.hypervisor]["rundir"])) as ctl:
            for line in ctl.call(m.DumpFlows("br-tun")):
                click.echo(line)

    _section("What the tunnel costs (ping RTT, iperf3 TCP, MTU)")
    for fig in measure(state, seconds=seconds):
        rtt = f"{fig.rtt_ms:.3f} ms" if fig.rtt_ms is not None else "n/a"
        tcp = f"{fig.tcp_gbps:.2f} Gbit/s" if fig.tcp_gbps is not None else "n/a"
        click.echo(f"  {fig.label}")
        click.echo(f"      MTU {fig.mtu:<5} RTT {rtt:<12} TCP {tcp:<14} ({fig.note})")
    click.echo("  VXLAN costs 50 bytes per frame (MTU 1450), GRE with a key 42 (MTU 1458).")

    _section("The lab is still up: look around")
    hv = sorted(state.hypervisors)[0]
    rundir = state.hypervisors[hv]["rundir"]
    click.echo(f"  tunnelnet lab --dir {directory} status")
    click.echo(f"  tunnelnet lab --dir {directory} ping red1 red3")
    click.echo(f"  tunnelnet lab --dir {directory} exec red1 -- ip addr")
    click.echo(f"  tunnelnet ofctl --rundir {rundir} dump-flows br-tun")
    click.echo(f"  tunnelnet vsctl --rundir {rundir} show")
    click.echo(f"  eval $(tunnelnet lab --dir {directory} env); tunnelnet network list")
    click.echo(f"  tunnelnet trace --help; TUNNELNET_LAB_DIR={directory} tunnelnet trace red1 "
               "blue2 --explain   (where the other tenant's frame is dropped)")
    click.echo(f"  the web page: TUNNELNET_LAB_DIR={directory} tunnelnet web --listen "
               "127.0.0.1:8080, then open http://127.0.0.1:8080/ (pick two VMs, click a "
               "bridge)")
    click.echo(f"  take it down: tunnelnet lab --dir {directory} down   (or: make demo-down)")
    return int(verdict or 0)


# the simulation mode (no root): lab sim, lab sim-demo; see tunnelnet.cli.labsim
from tunnelnet.cli import labsim  # noqa: E402

labsim.register(cli)
