"""``tunnelnet lab``: a small data centre on this machine, from a topology file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tunnelnet.cli import labsim
from tunnelnet.cli._matrix import print_matrix
from tunnelnet.cli._status import print_status
from tunnelnet.cli.trace import TraceCommand
from tunnelnet.lab.interface import Lab, LabInputError
from tunnelnet.lab.namespaces import NamespaceLab
from tunnelnet.lab.state import find_sim, lab_dir, usable_dir

if TYPE_CHECKING:
    from tunnelnet.lab.simulated import SimulatedLab


def _say(message: str) -> None:
    click.echo(f"  {message}", err=True)


def _tell(message: str) -> None:
    click.echo(message, err=True)


def _simulated(directory: Path) -> SimulatedLab:
    from tunnelnet.lab.simulated import SimulatedLab
    from tunnelnet.trace.sim_remote import OP, handler

    # the server this lab starts also answers the trace's questions (tunnelnet trace, web)
    return SimulatedLab(directory, _say, _tell, extra={OP: handler})


class LabChoice:
    """The lab one ``tunnelnet lab`` invocation talks to, chosen once: a simulated lab when
    ``up --sim`` asks for one or the lab that is up is simulated, else the lab of namespaces.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lab: Lab | None = None

    def lab(self, *, sim: bool | None = None) -> Lab:
        """``sim`` True/False: the caller says which (``up``); None: what is up decides."""
        if self._lab is None:
            found = find_sim(self.directory) if sim is None else None
            if sim:
                self._lab = self.simulated()
            elif found is not None:
                self._lab = _simulated(found)
            else:
                self._lab = NamespaceLab(self.directory, _say, _tell)
        return self._lab

    def simulated(self) -> SimulatedLab:
        """The simulated lab to start here (``up --sim``, ``lab sim-serve``): in the run
        directory, or where this user may write when that is not writable."""
        lab = _simulated(usable_dir(self.directory))
        self._lab = lab
        return lab


pass_choice = click.make_pass_decorator(LabChoice)


class _LabGroup(click.Group):
    """A request the lab refuses as wrong (an unknown VM, a taken address) is the command's
    usage error: exit 2, as click's own, so that 1 keeps meaning "not reached"/"surprise"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabInputError as exc:
            raise click.UsageError(str(exc)) from None


@click.group("lab", cls=_LabGroup)
@click.option("--dir", "directory", envvar="TUNNELNET_LAB_DIR", default=None,
              help="Run directory of the lab (env TUNNELNET_LAB_DIR; default "
                   "/run/tunnelnet-lab).")
@click.pass_context
def cli(ctx: click.Context, directory: str | None) -> None:
    """Build, inspect and remove a lab: an underlay switch, hypervisors and tenant VMs in
    network namespaces, with the controller, a vswitchd and an agent per hypervisor.

    Exit status 2: the request was wrong (an unknown VM, a taken address...); nothing was
    changed and the lab keeps running."""
    ctx.obj = LabChoice(lab_dir(directory))


# the simulation's own commands, which need no lab up (see tunnelnet.cli.labsim)
cli.add_command(labsim.sim)
cli.add_command(labsim.sim_demo)


@cli.command("up")
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@click.option("--l2pop/--no-l2pop", default=True, show_default=True,
              help="Tunnels and forwarding entries from the controller (l2population).")
@click.option("--arp-responder", is_flag=True, help="Answer ARP in br-tun (needs l2pop).")
@click.option("--sim", is_flag=True,
              help="Simulate it instead, no root: the same controller, agents and switches in "
                   "one background process wired in memory; lab status, verify, ping, "
                   "sim-flows, down and 'tunnelnet trace' work against it.")
@click.option("--foreground", is_flag=True,
              help="With --sim: hold the simulation in this terminal (Ctrl-C ends it).")
@pass_choice
def up(choice: LabChoice, topology: str, l2pop: bool, arp_responder: bool, sim: bool,
       foreground: bool) -> int:
    """Build the lab described by TOPOLOGY (a TOML file; see examples/demo.toml)."""
    if foreground and not sim:
        raise click.UsageError("--foreground goes with --sim")
    line = choice.lab(sim=sim).up(topology, l2pop=l2pop, arp_responder=arp_responder,
                                  foreground=foreground)
    if line:
        click.echo(line)
    return 0


@cli.command("down")
@pass_choice
def down(choice: LabChoice) -> None:
    """Stop every daemon and remove every namespace the lab made (also after a crash)."""
    click.echo(choice.lab().down())


@cli.command("env")
@pass_choice
def env(choice: LabChoice) -> None:
    """Print shell exports that point the tunnelnet client at the lab's controller:
    eval $(tunnelnet lab env); tunnelnet network list"""
    state = choice.lab().record()
    click.echo(f"export TUNNELNET_URL={state.server_url} TUNNELNET_TOKEN={state.admin_token}")


@cli.command("add-vm")
@click.argument("name")
@click.option("--network", required=True, help="Network (by its name in the topology).")
@click.option("--hypervisor", required=True, help="Hypervisor to boot it on.")
@click.option("--ip", default=None, help="Fixed address (default: the next free one).")
@pass_choice
def add_vm(choice: LabChoice, name: str, network: str, hypervisor: str,
           ip: str | None) -> None:
    """Boot one more VM in the running lab: a port on the controller, a namespace, a vNIC on
    br-int. Watch the agents program it (and, with l2pop, tunnels appear)."""
    click.echo(choice.lab().add_vm(name, network, hypervisor, ip).describe())


@cli.command("move")
@click.argument("vm")
@click.argument("hypervisor")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: where it went, its port's status and each step's seconds.")
@pass_choice
def move(choice: LabChoice, vm: str, hypervisor: str, as_json: bool) -> None:
    """Live-migrate VM to HYPERVISOR as Nova does: its port's binding:host_id changes through
    the API, its vNIC leaves the old br-int and joins the new one with the same MAC and
    address, and (real lab) the VM announces itself with QEMU's RARP frames. Its namespace
    stays: a ping running in it goes on. A simulated lab moves it between its switches.

    \b
    Steps timed: unplug, move-link (real lab), plug, bind (the PUT), wait-active (the new
    hypervisor's agent bound it), announce (real lab).
    Exit status: 0 moved; 1 it could not be (a hypervisor down: nothing was changed);
    2 a wrong request (unknown VM or hypervisor, already there: nothing was changed)."""
    moved = choice.lab().move(vm, hypervisor)
    click.echo(json.dumps(moved.document(), indent=2) if as_json else moved.describe())


@cli.command("stop")
@click.argument("daemon")
@pass_choice
def stop_daemon(choice: LabChoice, daemon: str) -> None:
    """Stop one daemon (server, agent-HV, vswitchd-HV; with [control] store = "etcd" also
    controller-N and etcd-N), e.g. to watch forwarding go on without its agent, a controller
    or an etcd member. 'lab start DAEMON' brings it back."""
    click.echo(choice.lab().stop(daemon))


@cli.command("start")
@click.argument("daemon")
@pass_choice
def start_daemon(choice: LabChoice, daemon: str) -> None:
    """Start a daemon stopped with 'lab stop' again, with its former command line."""
    click.echo(choice.lab().start(daemon))


def _print_status(lab: Lab, as_json: bool) -> None:
    data = lab.status()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    print_status(data, simulated=lab.simulated)


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_choice
def status(choice: LabChoice, as_json: bool) -> None:
    """Hypervisors (agent alive, tunnels), VMs (IP, MAC, tenant, network, port status), and
    the control plane: controllers (running, answering, URL) and etcd members (health and
    leader, as etcd reports them)."""
    _print_status(choice.lab(), as_json)


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("vm")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_choice
def exec_(choice: LabChoice, vm: str, command: tuple[str, ...]) -> int:
    """Run COMMAND inside VM's namespace: tunnelnet lab exec red1 -- ip addr."""
    return choice.lab().exec(vm, command)


@cli.command("ping", cls=TraceCommand)
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_choice
def ping_(choice: LabChoice, src: str, dst: str, as_json: bool) -> int:
    """Ping DST's address from SRC and say whether DST itself answered (a simulated lab
    walks the ARP exchange, the echo and its reply exactly as 'tunnelnet trace' does).

    \b
    Exit status: 0 DST answered, 1 it did not, 2 error (no lab, an unknown VM...)."""
    outcome = choice.lab().ping(src, dst)
    click.echo(json.dumps(outcome.document) if as_json else outcome.line)
    return 0 if outcome.reached else 1


def _verify(lab: Lab, as_json: bool) -> int:
    result = lab.verify()
    if as_json:
        click.echo(json.dumps(result.document, indent=2))
    else:
        print_matrix(result.names, result.verdicts, how=result.how)
    sys.stdout.flush()
    return 1 if result.surprises else 0


@cli.command("verify", cls=TraceCommand)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_choice
def verify(choice: LabChoice, as_json: bool) -> int:
    """Ping every VM from every other: same network must answer, anything else must not
    (a simulated lab walks each pair as 'tunnelnet trace' does).

    \b
    Exit status: 0 as expected, 1 any surprise, 2 error (no lab...)."""
    return _verify(choice.lab(), as_json)


def _sim_trace() -> click.Command:
    """``lab sim-trace``: the old spelling of ``tunnelnet trace``, kept as an alias (same
    options, output and exit status; the lab's --dir is the trace's)."""
    from tunnelnet.cli import trace as trace_cmd

    def callback(**kwargs: Any) -> Any:
        choice = click.get_current_context().find_object(LabChoice)
        directory = str(choice.directory) if choice is not None else None
        return click.get_current_context().invoke(trace_cmd.cli, directory=directory,
                                                  **kwargs)

    return trace_cmd.TraceCommand(
        "sim-trace", callback=callback,
        params=[p for p in trace_cmd.cli.params if p.name != "directory"],
        help="The same as 'tunnelnet trace SRC DST' (an alias: same options, output and exit "
             "status: 0 delivered, 1 not delivered, 2 error).")


cli.add_command(_sim_trace())


@cli.command("sim-flows")
@click.argument("hypervisor")
@click.argument("bridge", default="br-tun")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of flow lines).")
@pass_choice
def sim_flows(choice: LabChoice, hypervisor: str, bridge: str, as_json: bool) -> int:
    """A simulated lab: the flows of BRIDGE (default br-tun) on HYPERVISOR, as dump-flows
    (the same as 'tunnelnet ofctl --sim HYPERVISOR dump-flows BRIDGE')."""
    lines = choice.lab().flows(hypervisor, bridge)
    if as_json:
        click.echo(json.dumps(lines, indent=2))
    for line in [] if as_json else lines:
        click.echo(line)
    return 0


@cli.command("sim-serve", hidden=True)
@click.argument("topology", type=click.Path(exists=True, dir_okay=False))
@click.option("--l2pop/--no-l2pop", default=True)
@click.option("--arp-responder", is_flag=True)
@pass_choice
def sim_serve(choice: LabChoice, topology: str, l2pop: bool, arp_responder: bool) -> int:
    """Hold a simulated lab in the foreground and answer the lab commands (lab up --sim)."""
    choice.simulated().serve(topology, l2pop=l2pop, arp_responder=arp_responder)
    return 0


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
    choice: LabChoice = ctx.obj
    directory = choice.directory
    if os.geteuid() != 0:
        click.echo("The lab needs root (network namespaces). Running the simulation demo, "
                   "which needs none; run 'sudo make demo' for the real one.", err=True)
        return int(ctx.invoke(labsim.sim_demo, topology=topology) or 0)
    from tunnelnet.lab.measure import measure
    from tunnelnet.lab.runner import LabRunner

    runner = LabRunner(directory, _say)
    if runner.file.exists():
        _section("A lab is already up: taking it down first")
        runner.down()
    _section(f"Building the data centre of {topology}")
    state = runner.up(topology)

    lab = NamespaceLab(directory, _say, _tell)
    _section("Who is where (tunnelnet lab status)")
    _print_status(lab, as_json=False)

    _section("Reachability: every VM pings every other (tunnelnet lab verify)")
    click.echo("Two tenants use the same 10.0.0.0/24. A pair counts as reached only if the "
               "destination VM itself answered (its own MAC), so an equal address in another "
               "tenant never counts.")
    verdict = _verify(lab, as_json=False)

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
