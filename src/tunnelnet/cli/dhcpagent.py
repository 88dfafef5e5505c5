"""``tunnelnet dhcp-agent``: DHCP for tenant networks, as Neutron's DHCP agent serves it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from tunnelnet.cli._daemon import (
    controller_options,
    log_options,
    run_until_signalled,
    start_logging,
)
from tunnelnet.client.http import Client
from tunnelnet.dhcp import plumbing
from tunnelnet.dhcp.agent import DhcpAgent, DhcpAgentConfig
from tunnelnet.dhcp.dnsmasq import unreachable_by_others


@click.command("dhcp-agent")
@click.option("--host", envvar="TUNNELNET_HOST", required=True,
              help="This host's name: DHCP ports are bound to it (binding:host_id), so the "
                   "Open vSwitch agent of the same host wires them.")
@controller_options(
    url_help="Controller URL, or several on one store separated by commas (env TUNNELNET_URL).",
    token_help="An admin token (env TUNNELNET_TOKEN): the agent creates DHCP ports bound to "
               "its host in every project.")
@click.option("--rundir", envvar="TUNNELNET_RUNDIR", default="/run/tunnelnet",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory of this host's vswitchd.")
@click.option("--switch", "switch_kind", type=click.Choice(["tunnelnet", "ovs"]),
              default="tunnelnet", show_default=True,
              help="Plug DHCP ports into our vswitchd, or into Open vSwitch (ovs-vsctl).")
@click.option("--ovs-rundir", default=None,
              help="With --switch ovs: run directory of a privately started Open vSwitch.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where each network's dnsmasq files go (default: RUNDIR/dhcp).")
@click.option("--netns-prefix", default="", show_default=True,
              help="Put this before each namespace's name (qdhcp-<network id>).")
@click.option("--host-netns", default=None,
              help="The namespace the switch's ports live in, when it is not this "
                   "process's own (the lab's hypervisors are namespaces).")
@click.option("--dnsmasq", "dnsmasq_bin", default="dnsmasq", show_default=True,
              help="The dnsmasq binary (Debian package dnsmasq-base).")
@click.option("--poll-interval", default=0.5, show_default=True, type=float,
              help="Seconds of each watch long-poll.")
@log_options
def cli(host: str, url: str, ca_file: str | None, insecure_http: bool, token: str,
        rundir: Path, switch_kind: str, ovs_rundir: str | None, state_dir: Path | None,
        netns_prefix: str, host_netns: str | None, dnsmasq_bin: str, poll_interval: float,
        log_file: Path | None, log_level: str) -> None:
    """Serve DHCP to the ports of every network with a DHCP-enabled subnet.

    Per network: a DHCP port on the controller (device_owner network:dhcp, an address on
    each served subnet, bound to --host), a namespace qdhcp-<network id> behind it on br-int,
    and a dnsmasq in it that answers only the MACs of the network's ports, with each one's
    address, mask, gateway, DNS servers, host routes (option 121) and the network's MTU
    (option 26). Ports created or deleted reload dnsmasq (SIGHUP). Needs root (namespaces).
    Stop it with SIGTERM or Ctrl-C: its dnsmasqs and namespaces go, its ports stay for the
    next start.
    """
    if os.geteuid() != 0:
        raise click.UsageError("the DHCP agent needs root (it makes network namespaces)")
    if shutil.which(dnsmasq_bin) is None:
        raise click.UsageError(f"{dnsmasq_bin!r} not found: install Debian's dnsmasq-base "
                               "(or give --dnsmasq)")
    state = (state_dir or rundir / "dhcp").absolute()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    closed = unreachable_by_others(state)
    if closed is not None:
        raise click.UsageError(
            f"dnsmasq runs as user nobody, who cannot pass through {closed} (mode "
            f"{closed.stat().st_mode & 0o777:o}) to its files in {state}: give a --state-dir "
            "that everyone may traverse (such as /run/tunnelnet/dhcp)")
    start_logging(log_file, log_level)
    plug: plumbing.SwitchPlug = (plumbing.OvsPlug(ovs_rundir) if switch_kind == "ovs"
                                 else plumbing.VswitchdPlug(rundir.absolute()))
    conf = DhcpAgentConfig(host=host, state_dir=state,
                           netns_prefix=netns_prefix, host_netns=host_netns,
                           dnsmasq=dnsmasq_bin, poll_interval=poll_interval)
    client = Client(url, token, ca_file=ca_file, insecure_http=insecure_http)
    agent = DhcpAgent(conf, client, plug)
    run_until_signalled("DHCP agent", agent.run, client.close)
