"""``tunnelnet verify``: every hypervisor's switch against the controller's intent."""

from __future__ import annotations

import json
from typing import Any, Final

import click

from tunnelnet.errors import TunnelnetError

CLEAN: Final = 0
FINDINGS: Final = 1
ERROR: Final = 2  # as click's usage errors: the question could not be answered


class VerifyCommand(click.Command):
    """An error of ours (no lab, no controller, an unknown hypervisor) exits 2, so that 1
    keeps meaning "found something"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TunnelnetError as exc:
            click.echo(f"tunnelnet: error: {exc}", err=True)
            raise click.exceptions.Exit(ERROR) from None


@click.command("verify", cls=VerifyCommand)
@click.option("--dir", "directory", envvar="TUNNELNET_LAB_DIR", default=None,
              help="Run directory of the lab (env TUNNELNET_LAB_DIR); the lab that is up "
                   "when neither this nor --server is given.")
@click.option("--server", "url", default=None,
              help="The controller's URL (http://H:P or unix:PATH), instead of a lab; then "
                   "name the hypervisors with --vswitchd and --ovs.")
@click.option("--token", envvar="TUNNELNET_TOKEN", default="",
              help="With --server: an admin token (env TUNNELNET_TOKEN).")
@click.option("--vswitchd", "switches", multiple=True, metavar="HOST=RUNDIR",
              help="With --server: HOST runs tunnelnet vswitchd with its control socket in "
                   "RUNDIR (repeatable).")
@click.option("--ovs", "ovs", multiple=True, metavar="HOST[=OVS_RUNDIR]",
              help="With --server: HOST runs Open vSwitch, asked with ovs-vsctl/ovs-ofctl "
                   "(its run directory, or the system's without one; repeatable).")
@click.option("--host", "hosts", multiple=True, metavar="H",
              help="Verify only this hypervisor (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (with the time verify took).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def cli(directory: str | None, url: str | None, token: str, switches: tuple[str, ...],
        ovs: tuple[str, ...], hosts: tuple[str, ...], as_json: bool, quiet: bool) -> int:
    """Compare every hypervisor's switch with what the controller's state says it should
    hold, computed by the agents' own planning code: br-int's, br-tun's and the physical
    bridges' flows, tunnel ports, and each vNIC's local VLAN.

    \b
    Reported per hypervisor:
      missing flow, unexpected flow, flow with other actions, flow of a stale cookie,
      output to a port that does not exist, missing / unknown / unneeded tunnel port,
      vNIC on the wrong local VLAN, bound vNIC on the dead VLAN (4095), unbound vNIC off it,
      missing bridge or patch port, a flow verify cannot read.

    Learned flows (br-tun table 20 entries made by learn(), NORMAL's MAC table) are traffic's,
    not intent, and are not reported. Local VLANs are each agent's own numbers: they are read
    from the flow that translates a network's key (or provider VLAN) into its local VLAN and
    from its vNICs' tags; where the two disagree, the one more installed flows agree with
    wins, so a vNIC moved to another VLAN by hand is found. The current agent generation is
    the cookie of br-int's canary flow (table 23).

    \b
    Exit status:
      0  every hypervisor asked holds exactly its intent
      1  something was found
      2  error: no lab or controller, an unknown --host, a switch that does not answer"""
    from tunnelnet.lab.state import lab_dir
    from tunnelnet.verify import targets as t
    from tunnelnet.verify.render import to_text
    from tunnelnet.verify.run import verify

    if url is None and (switches or ovs):
        raise click.UsageError("--vswitchd and --ovs name the hypervisors of --server; a "
                               "lab's are read from its record")
    if url is not None:
        given = click.get_current_context().get_parameter_source("directory")
        if given is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("give a lab (--dir) or a controller (--server), not both")
        if not switches and not ovs:
            raise click.UsageError("--server needs the hypervisors to ask: --vswitchd "
                                   "HOST=RUNDIR and/or --ovs HOST[=OVS_RUNDIR]")
        from tunnelnet.client.http import Client

        client = Client(url, token, timeout=30.0)
        chosen = t.pick(t.given_targets(switches, ovs), hosts)
    else:
        client, chosen = t.lab_targets(lab_dir(directory), hosts)

    def say(line: str) -> None:
        if not quiet:
            click.echo(f"verify: {line}", err=True)

    with client:
        report = verify(client, chosen, say=say)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(to_text(report), nl=False)
    return report.exit_code()
