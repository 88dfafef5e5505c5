"""Entry point of the ``tunnelnet`` command.

Each command group lives in its own module and is registered in ``_GROUPS``; a group module
exposes a click command or group named ``cli``. Errors of ours become one line on stderr and
exit status 1, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from tunnelnet import __version__
from tunnelnet.errors import TunnelnetError

# command name -> module that defines it (as `cli`)
_GROUPS: dict[str, str] = {
    "packet": "tunnelnet.cli.packet",
    "agent": "tunnelnet.cli.agent",
    "dhcp-agent": "tunnelnet.cli.dhcpagent",
    "lab": "tunnelnet.cli.lab",
    "demo": "tunnelnet.cli.demo",
    "vswitchd": "tunnelnet.cli.vswitchd",
    "vsctl": "tunnelnet.cli.vsctl",
    "ofctl": "tunnelnet.cli.ofctl",
    "server": "tunnelnet.cli.server",
    "flows": "tunnelnet.cli.flows",
    "network": "tunnelnet.cli.network",
    "subnet": "tunnelnet.cli.subnet",
    "port": "tunnelnet.cli.port",
    "agents": "tunnelnet.cli.agentcmd",
    "token": "tunnelnet.cli.token",
    "project": "tunnelnet.cli.project",
    "trace": "tunnelnet.cli.trace",
    "web": "tunnelnet.cli.web",
    "watch": "tunnelnet.cli.watchcmd",
    "verify": "tunnelnet.cli.verify",
    "store": "tunnelnet.cli.store",
    "fastpath": "tunnelnet.cli.fastpath",
}


class _LazyGroup(click.Group):
    """Imports a command group's module only when that group is used (fast startup)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_GROUPS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _GROUPS:
            module = importlib.import_module(_GROUPS[cmd_name])
            command: click.Command = module.cli
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunnelnet")
def cli() -> None:
    """tunnelnet: multi-tenant virtual networks over VXLAN and GRE tunnels.

    A virtual switch with OpenFlow-style tables, tunnel ports that interoperate with Linux and
    Open vSwitch, a per-hypervisor agent, a controller with a REST API, and a lab that runs a
    small data centre from network namespaces.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        result = cli.main(args=argv, prog_name="tunnelnet", standalone_mode=False)
    except TunnelnetError as exc:
        click.echo(f"tunnelnet: error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("tunnelnet: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0
    # a command may return its exit status (e.g. 1 when a verification found a surprise)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
