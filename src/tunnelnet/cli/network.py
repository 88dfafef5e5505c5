"""`tunnelnet network list|show|create|set|delete`."""

from __future__ import annotations

import click

from tunnelnet.cli._api import (
    Output,
    client_options,
    delete_all,
    drop_none,
    enable_option,
    output_options,
    resolve,
)  # fmt: skip
from tunnelnet.client import Client
from tunnelnet.packet import tunnel_kinds

COLUMNS = ("id", "name", "provider:network_type", "provider:segmentation_id", "mtu", "subnets")


@click.group()
def cli() -> None:
    """Networks: a project's L2 segment (a tunnel kind, vlan, flat or local)."""


@cli.command("list")
@click.option("--project", help="Only this project's networks (admin).")
@click.option("--name", help="Only networks with this name.")
@click.option("--type", "network_type", help="Only networks of this type.")
@client_options
@output_options
def list_(client: Client, out: Output, project: str | None, name: str | None,
          network_type: str | None) -> None:  # fmt: skip
    """List networks."""
    filters = drop_none(project_id=project, name=name, **{"provider:network_type": network_type})
    out.many(client.list("network", **filters), COLUMNS)


@cli.command()
@click.argument("network")
@client_options
@output_options
def show(client: Client, out: Output, network: str) -> None:
    """Show a network (by name or id)."""
    out.one(resolve(client, "network", network))


# each provider option also answers to the openstack CLI's name for it, so that a line
# copied from 'openstack network create' works as it is
@cli.command()
@click.argument("name")
@click.option(
    "--type",
    "--provider-network-type",
    "network_type",
    type=click.Choice((*tunnel_kinds.names(), "vlan", "flat", "local")),
    help="provider:network_type (admin; default: the server's tenant type).",
)
@click.option("--segment", "--provider-segment", "segment", type=int,
              help="provider:segmentation_id (admin).")
@click.option("--physnet", "--provider-physical-network", "physnet",
              help="provider:physical_network for vlan/flat (admin).")
@click.option("--project", help="Owning project (admin).")
@click.option("--mtu", type=int, help="A smaller MTU than the type allows.")
@click.option("--description")
@enable_option
@client_options
@output_options
def create(client: Client, out: Output, name: str, network_type: str | None,
           segment: int | None, physnet: str | None, project: str | None, mtu: int | None,
           description: str | None, admin_state_up: bool | None) -> None:  # fmt: skip
    """Create a network."""
    fields = drop_none(
        name=name, project_id=project, mtu=mtu, description=description,
        admin_state_up=admin_state_up,
        **{"provider:network_type": network_type, "provider:segmentation_id": segment,
           "provider:physical_network": physnet},
    )  # fmt: skip
    out.one(client.create("network", **fields))


@cli.command("set")
@click.argument("network")
@click.option("--name")
@click.option("--mtu", type=int)
@click.option("--description")
@enable_option
@client_options
@output_options
def set_(client: Client, out: Output, network: str, name: str | None, mtu: int | None,
         description: str | None, admin_state_up: bool | None) -> None:  # fmt: skip
    """Change a network's name, MTU, description or state."""
    net = resolve(client, "network", network)
    fields = drop_none(name=name, mtu=mtu, description=description, admin_state_up=admin_state_up)
    if not fields:
        raise click.UsageError("nothing to set: give --name, --mtu, --description or --enable")
    out.one(client.update("network", net["id"], **fields))


@cli.command()
@click.argument("networks", nargs=-1, required=True)
@client_options
def delete(client: Client, networks: tuple[str, ...]) -> None:
    """Delete networks (and their subnets); refused while ports remain."""
    delete_all(client, "network", networks)
