"""``tunnelnet agent``: the per-hypervisor agent that programs br-int and br-tun."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address
from pathlib import Path

import click

from tunnelnet.agent.backend import SwitchBackend
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.http_controller import HttpController
from tunnelnet.agent.liveness import DEFAULT_INTERVAL_MS, DEFAULT_MULT, BfdSettings
from tunnelnet.agent.service import BR_TUN, Agent, AgentTimers
from tunnelnet.agent.view import DEFAULT_TUNNEL_TYPES, TUNNEL_NETWORK_TYPES
from tunnelnet.cli import agentcmd
from tunnelnet.cli._daemon import (
    controller_options,
    log_options,
    run_until_signalled,
    start_logging,
)
from tunnelnet.client.http import Client


def _backend(kind: str, rundir: Path, ovs_rundir: str | None) -> SwitchBackend:
    if kind == "ovs":
        from tunnelnet.agent.ovs_backend import OvsBackend

        return OvsBackend(ovs_rundir)
    from tunnelnet.agent.vswitchd_backend import VswitchdBackend

    return VswitchdBackend(rundir)


def _mappings(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        physnet, sep, bridge = item.partition(":")
        if not sep or not physnet or not bridge:
            raise click.BadParameter(f"{item!r} is not PHYSNET:BRIDGE",
                                     param_hint="--bridge-mappings")
        out[physnet] = bridge
    return out


@click.group("agent", invoke_without_command=True)
@click.option("--host", envvar="TUNNELNET_HOST",
              help="This hypervisor's name, as ports' binding:host_id name it.")
@controller_options(
    url_help="Controller URL, or several on one store separated by commas: when one fails or "
             "its watch breaks, the agent moves to the next and resumes from its last "
             "revision (https://HOST:PORT, http:// on loopback, unix:PATH) [env TUNNELNET_URL].",
    token_help="Agent or admin token (env TUNNELNET_TOKEN).")
@click.option("--tunnel-ip", help="This hypervisor's address on the underlay.")
@click.option("--tunnel-types", default=",".join(DEFAULT_TUNNEL_TYPES), show_default=True,
              help="Tunnel types this host speaks, comma-separated (of "
                   f"{', '.join(sorted(TUNNEL_NETWORK_TYPES))}).")
@click.option("--rundir", envvar="TUNNELNET_RUNDIR", default="/run/tunnelnet",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory of this host's vswitchd.")
@click.option("--switch", "switch_kind", type=click.Choice(["tunnelnet", "ovs"]),
              default="tunnelnet", show_default=True,
              help="Drive our vswitchd, or a real Open vSwitch through ovs-vsctl/ovs-ofctl.")
@click.option("--ovs-rundir", default=None,
              help="With --switch ovs: run directory of a privately started Open vSwitch.")
@click.option("--l2pop", is_flag=True, help="Tunnels and forwarding entries from the "
              "controller's knowledge of where ports are (l2population).")
@click.option("--arp-responder", is_flag=True, help="Answer ARP for known VMs locally "
              "(needs --l2pop).")
@click.option("--bridge-mappings", default="", help="PHYSNET:BRIDGE,... for VLAN/flat networks.")
@click.option("--bfd-interval", "bfd_interval", envvar="TUNNELNET_BFD_INTERVAL",
              default=DEFAULT_INTERVAL_MS, show_default=True, type=click.IntRange(min=0),
              help="BFD on every tunnel: milliseconds between control packets (bfd:min_tx and "
                   "bfd:min_rx); 0 turns BFD off. A tunnel whose session goes down leaves the "
                   "flood lists until it comes up (env TUNNELNET_BFD_INTERVAL).")
@click.option("--bfd-mult", default=DEFAULT_MULT, show_default=True,
              type=click.IntRange(1, 255),
              help="BFD detection multiplier: down after this many intervals without a packet.")
@click.option("--controller-timeout", envvar="TUNNELNET_CONTROLLER_TIMEOUT", default=60.0,
              show_default=True, type=click.FloatRange(min=1.0),
              help="Seconds to wait for a controller's answer (Neutron's rpc_response_timeout): "
                   "a slow controller's late answer is still taken, a hung one is left for "
                   "the next of the list after this long (env TUNNELNET_CONTROLLER_TIMEOUT).")
@click.option("--poll-interval", default=0.5, show_default=True, type=float,
              help="Seconds between rounds (each reads the switch: vNICs plugged, restarts).")
@click.option("--long-poll", default=25.0, show_default=True, type=float,
              help="Seconds the controller may hold a watch poll when nothing changes (in a "
                   "thread of its own; at most --poll-interval: one poll per round).")
@log_options
@click.pass_context
def cli(ctx: click.Context, host: str | None, url: str, ca_file: str | None,
        insecure_http: bool, token: str, tunnel_ip: str | None,
        tunnel_types: str, rundir: Path, switch_kind: str, ovs_rundir: str | None, l2pop: bool,
        arp_responder: bool, bridge_mappings: str, bfd_interval: int, bfd_mult: int,
        controller_timeout: float, poll_interval: float, long_poll: float,
        log_file: Path | None,
        log_level: str) -> None:
    """Run the agent of one hypervisor (--host and --tunnel-ip), or manage agents'
    records on the controller (list, show, set, delete).

    The agent registers with the controller, creates br-int and br-tun (fail-secure) joined
    by patch-tun/patch-int, lists and watches networks, ports and peer agents, and keeps the
    switch's ports, tunnels and flows equal to what they say, as Neutron's Open vSwitch agent
    does. Stop it with SIGTERM or Ctrl-C: the switch keeps forwarding without it. While no
    controller answers, it changes no flow (it restores them only if the switch lost them)
    and says so once in its log.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not host or not tunnel_ip:
        raise click.UsageError("running the agent needs --host and --tunnel-ip (or give a "
                               "subcommand: list, show, set, delete)")
    try:
        IPv4Address(tunnel_ip)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tunnel-ip") from exc
    types = frozenset(t.strip() for t in tunnel_types.split(",") if t.strip())
    unknown = types - TUNNEL_NETWORK_TYPES
    if unknown:
        raise click.BadParameter(f"unknown tunnel type(s): {', '.join(sorted(unknown))}",
                                 param_hint="--tunnel-types")
    if arp_responder and not l2pop:
        raise click.BadParameter("the ARP responder needs --l2pop (it answers from the "
                                 "controller's knowledge of ports)", param_hint="--arp-responder")
    start_logging(log_file, log_level)
    mappings = _mappings(bridge_mappings)
    conf = AgentConfig(host=host, tunnel_ip=tunnel_ip, tunnel_types=types, l2pop=l2pop,
                       arp_responder=arp_responder, bridge_mappings=mappings,
                       mtu_doctor=switch_kind == "ovs")
    client = Client(url, token, timeout=controller_timeout, ca_file=ca_file,
                    insecure_http=insecure_http)
    controller = HttpController(client, l2pop=l2pop, arp_responder=arp_responder)
    agent = Agent(conf, controller, _backend(switch_kind, rundir.absolute(), ovs_rundir),
                  timers=AgentTimers(poll_interval=poll_interval, long_poll=long_poll),
                  bridge_mappings=mappings,
                  bfd=BfdSettings(interval_ms=bfd_interval, mult=bfd_mult))

    def serve(stop: threading.Event) -> None:
        if conf.mtu_doctor:
            from tunnelnet.agent import mtu_doctor

            # Open vSwitch's bridge management sockets: its run directory's, else the system's
            mgmt = Path(ovs_rundir or "/var/run/openvswitch") / f"{BR_TUN}.mgmt"
            mtu_doctor.start(mgmt, rundir.absolute(), stop)
        agent.run(stop)

    run_until_signalled("agent", serve, client.close)


# `tunnelnet agent list|show|set|delete`: the controller's records of agents (also reachable
# as `tunnelnet agents ...`), beside running the agent itself
for _name, _command in agentcmd.cli.commands.items():
    cli.add_command(_command, _name)
