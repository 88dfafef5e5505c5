"""`tunnelnet subnet list|show|create|set|delete`."""

from __future__ import annotations

from typing import Any

import click

from tunnelnet.cli._api import (
    Output,
    client_options,
    delete_all,
    drop_none,
    output_options,
    resolve,
)  # fmt: skip
from tunnelnet.client import Client

COLUMNS = ("id", "name", "network_id", "cidr", "gateway_ip", "allocation_pools")


@click.group()
def cli() -> None:
    """Subnets: address ranges of a network, with gateway and allocation pools."""


@cli.command("list")
@click.option("--network", help="Only subnets of this network (name or id).")
@click.option("--project", help="Only this project's subnets (admin).")
@client_options
@output_options
def list_(client: Client, out: Output, network: str | None, project: str | None) -> None:
    """List subnets."""
    net_id = resolve(client, "network", network)["id"] if network else None
    out.many(client.list("subnet", **drop_none(network_id=net_id, project_id=project)), COLUMNS)


@cli.command()
@click.argument("subnet")
@client_options
@output_options
def show(client: Client, out: Output, subnet: str) -> None:
    """Show a subnet (by name or id)."""
    out.one(resolve(client, "subnet", subnet))


def _pool(text: str) -> dict[str, str]:
    start, sep, end = text.partition(",")
    if not sep:
        raise click.BadParameter(f"{text!r} is not START,END", param_hint="--pool")
    return {"start": start.strip(), "end": end.strip()}


@cli.command()
@click.argument("name")
@click.option("--network", required=True, help="The network (name or id).")
@click.option("--cidr", required=True, help="e.g. 10.0.0.0/24 or 2001:db8::/64")
@click.option("--gateway", help="Gateway address, or 'none' for no gateway.")
@click.option("--pool", "pools", multiple=True, help="Allocation pool START,END (repeatable).")
@click.option("--dns", "dns", multiple=True, help="DNS server (repeatable).")
@click.option("--dhcp/--no-dhcp", default=True, show_default=True,
              help="Serve DHCP to the network's ports (enable_dhcp).")
@client_options
@output_options
def create(client: Client, out: Output, name: str, network: str, cidr: str,
           gateway: str | None, pools: tuple[str, ...], dns: tuple[str, ...],
           dhcp: bool) -> None:  # fmt: skip
    """Create a subnet."""
    fields: dict[str, Any] = {
        "name": name, "network_id": resolve(client, "network", network)["id"], "cidr": cidr,
        "enable_dhcp": dhcp,
    }  # fmt: skip
    if gateway is not None:
        fields["gateway_ip"] = None if gateway.lower() == "none" else gateway
    if pools:
        fields["allocation_pools"] = [_pool(p) for p in pools]
    if dns:
        fields["dns_nameservers"] = list(dns)
    out.one(client.create("subnet", **fields))


@cli.command("set")
@click.argument("subnet")
@click.option("--name")
@click.option("--description")
@click.option("--dhcp/--no-dhcp", default=None,
              help="Serve DHCP to the network's ports, or stop (enable_dhcp).")
@client_options
@output_options
def set_(client: Client, out: Output, subnet: str, name: str | None,
         description: str | None, dhcp: bool | None) -> None:  # fmt: skip
    """Change a subnet's name, description or DHCP."""
    fields = drop_none(name=name, description=description, enable_dhcp=dhcp)
    if not fields:
        raise click.UsageError("nothing to set: give --name, --description or --dhcp/--no-dhcp")
    out.one(client.update("subnet", resolve(client, "subnet", subnet)["id"], **fields))


@cli.command()
@click.argument("subnets", nargs=-1, required=True)
@client_options
def delete(client: Client, subnets: tuple[str, ...]) -> None:
    """Delete subnets; refused while ports hold addresses in them."""
    delete_all(client, "subnet", subnets)
