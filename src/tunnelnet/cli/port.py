"""`tunnelnet port list|show|create|set|delete`."""

from __future__ import annotations

from typing import Any

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

COLUMNS = ("id", "name", "mac_address", "fixed_ips", "binding:host_id", "status")


def _fixed_ip(client: Client, text: str) -> dict[str, str]:
    """`subnet=NAME_OR_ID,ip-address=IP` (either part may be left out), as openstack takes."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in ("subnet", "ip-address"):
            raise click.BadParameter(
                f"{text!r}: use subnet=SUBNET,ip-address=IP", param_hint="--fixed-ip"
            )
        if key == "subnet":
            out["subnet_id"] = resolve(client, "subnet", value)["id"]
        else:
            out["ip_address"] = value
    return out


@click.group()
def cli() -> None:
    """Ports: a vNIC's place on a network, with MAC, addresses and binding."""


@cli.command("list")
@click.option("--network", help="Only ports of this network (name or id).")
@click.option("--host", help="Only ports bound to this host (binding:host_id).")
@click.option("--device-id", help="Only ports of this device.")
@click.option("--device-owner", help="Only ports of this owner (network:dhcp, compute:...).")
@click.option("--project", help="Only this project's ports (admin).")
@client_options
@output_options
def list_(client: Client, out: Output, network: str | None, host: str | None,
          device_id: str | None, device_owner: str | None,
          project: str | None) -> None:  # fmt: skip
    """List ports."""
    net_id = resolve(client, "network", network)["id"] if network else None
    filters = drop_none(network_id=net_id, device_id=device_id, device_owner=device_owner,
                        project_id=project, **{"binding:host_id": host})  # fmt: skip
    out.many(client.list("port", **filters), COLUMNS)


@cli.command()
@click.argument("port")
@client_options
@output_options
def show(client: Client, out: Output, port: str) -> None:
    """Show a port (by name or id)."""
    out.one(resolve(client, "port", port))


@cli.command()
@click.argument("name")
@click.option("--network", required=True, help="The network (name or id).")
@click.option("--mac", help="MAC address (default: generated).")
@click.option(
    "--fixed-ip",
    "fixed_ips",
    multiple=True,
    help="subnet=SUBNET,ip-address=IP (repeatable; default: one per IP version).",
)
@click.option("--host", help="binding:host_id, the hypervisor (admin).")
@click.option("--device-id")
@click.option("--device-owner")
@click.option("--project", help="Owning project (admin).")
@enable_option
@client_options
@output_options
def create(client: Client, out: Output, name: str, network: str, mac: str | None,
           fixed_ips: tuple[str, ...], host: str | None, device_id: str | None,
           device_owner: str | None, project: str | None,
           admin_state_up: bool | None) -> None:  # fmt: skip
    """Create a port."""
    fields: dict[str, Any] = drop_none(
        name=name, network_id=resolve(client, "network", network)["id"], mac_address=mac,
        device_id=device_id, device_owner=device_owner, project_id=project,
        admin_state_up=admin_state_up, **{"binding:host_id": host},
    )  # fmt: skip
    if fixed_ips:
        fields["fixed_ips"] = [_fixed_ip(client, f) for f in fixed_ips]
    out.one(client.create("port", **fields))


@cli.command("set")
@click.argument("port")
@click.option("--name")
@click.option("--host", help="binding:host_id (admin); '' unbinds.")
@click.option(
    "--status",
    type=click.Choice(["DOWN", "BUILD", "ACTIVE", "ERROR"]),
    help="Port status (admin or agent).",
)
@click.option("--fixed-ip", "fixed_ips", multiple=True, help="Replace the addresses.")
@click.option("--device-id")
@click.option("--device-owner")
@enable_option
@client_options
@output_options
def set_(client: Client, out: Output, port: str, name: str | None, host: str | None,
         status: str | None, fixed_ips: tuple[str, ...], device_id: str | None,
         device_owner: str | None, admin_state_up: bool | None) -> None:  # fmt: skip
    """Change a port."""
    doc = resolve(client, "port", port)
    fields: dict[str, Any] = drop_none(
        name=name, status=status, device_id=device_id, device_owner=device_owner,
        admin_state_up=admin_state_up, **{"binding:host_id": host},
    )  # fmt: skip
    if fixed_ips:
        fields["fixed_ips"] = [_fixed_ip(client, f) for f in fixed_ips]
    if not fields:
        raise click.UsageError("nothing to set")
    out.one(client.update("port", doc["id"], **fields))


@cli.command()
@click.argument("ports", nargs=-1, required=True)
@client_options
def delete(client: Client, ports: tuple[str, ...]) -> None:
    """Delete ports (their addresses and MACs are released)."""
    delete_all(client, "port", ports)
