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


def _address_pair(text: str) -> dict[str, str]:
    """`ip-address=IP[,mac-address=MAC]`, as openstack's --allowed-address takes it."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in ("ip-address", "mac-address") or not value:
            raise click.BadParameter(
                f"{text!r}: use ip-address=IP[,mac-address=MAC]", param_hint="--allowed-address"
            )
        out[key.replace("-", "_")] = value
    if "ip_address" not in out:
        raise click.BadParameter(f"{text!r}: ip-address= is required",
                                 param_hint="--allowed-address")  # fmt: skip
    return out


def _allowed_address_option(func: Any) -> Any:
    return click.option(
        "--allowed-address", "allowed", multiple=True,
        help="ip-address=IP_OR_CIDR[,mac-address=MAC]: another address the port may send "
             "from (allowed_address_pairs; repeatable; the MAC defaults to the port's).",
    )(func)  # fmt: skip


def _port_security_option(func: Any) -> Any:
    return click.option(
        "--enable-port-security/--disable-port-security", "port_security", default=None,
        help="Spoofing protection: the port may send only from its own MAC and addresses "
             "(default on, or the network's setting).",
    )(func)  # fmt: skip


def _same_pair(a: dict[str, Any], b: dict[str, Any], port_mac: str) -> bool:
    return a["ip_address"] == b["ip_address"] and (
        a.get("mac_address") or port_mac).lower() == (b.get("mac_address") or port_mac).lower()


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
@_allowed_address_option
@_port_security_option
@enable_option
@client_options
@output_options
def create(client: Client, out: Output, name: str, network: str, mac: str | None,
           fixed_ips: tuple[str, ...], host: str | None, device_id: str | None,
           device_owner: str | None, project: str | None, allowed: tuple[str, ...],
           port_security: bool | None, admin_state_up: bool | None) -> None:  # fmt: skip
    """Create a port."""
    fields: dict[str, Any] = drop_none(
        name=name, network_id=resolve(client, "network", network)["id"], mac_address=mac,
        device_id=device_id, device_owner=device_owner, project_id=project,
        admin_state_up=admin_state_up, port_security_enabled=port_security,
        **{"binding:host_id": host},
    )  # fmt: skip
    if fixed_ips:
        fields["fixed_ips"] = [_fixed_ip(client, f) for f in fixed_ips]
    if allowed:
        fields["allowed_address_pairs"] = [_address_pair(a) for a in allowed]
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
@_allowed_address_option
@click.option("--no-allowed-address", is_flag=True,
              help="Remove every allowed address pair first (then add any --allowed-address).")
@_port_security_option
@enable_option
@client_options
@output_options
def set_(client: Client, out: Output, port: str, name: str | None, host: str | None,
         status: str | None, fixed_ips: tuple[str, ...], device_id: str | None,
         device_owner: str | None, allowed: tuple[str, ...], no_allowed_address: bool,
         port_security: bool | None, admin_state_up: bool | None) -> None:  # fmt: skip
    """Change a port. --allowed-address adds to the port's pairs, as openstack's does."""
    doc = resolve(client, "port", port)
    fields: dict[str, Any] = drop_none(
        name=name, status=status, device_id=device_id, device_owner=device_owner,
        admin_state_up=admin_state_up, port_security_enabled=port_security,
        **{"binding:host_id": host},
    )  # fmt: skip
    if fixed_ips:
        fields["fixed_ips"] = [_fixed_ip(client, f) for f in fixed_ips]
    if allowed or no_allowed_address:
        pairs = [] if no_allowed_address else list(doc.get("allowed_address_pairs") or [])
        for new in map(_address_pair, allowed):
            if not any(_same_pair(new, old, doc["mac_address"]) for old in pairs):
                pairs.append(new)
        fields["allowed_address_pairs"] = pairs
    if not fields:
        raise click.UsageError("nothing to set")
    out.one(client.update("port", doc["id"], **fields))


@cli.command()
@click.argument("port")
@click.option("--allowed-address", "allowed", multiple=True, required=True,
              help="ip-address=IP_OR_CIDR[,mac-address=MAC]: the pair to remove (repeatable).")
@client_options
@output_options
def unset(client: Client, out: Output, port: str, allowed: tuple[str, ...]) -> None:
    """Remove allowed address pairs from a port."""
    doc = resolve(client, "port", port)
    pairs = list(doc.get("allowed_address_pairs") or [])
    for gone in map(_address_pair, allowed):
        kept = [p for p in pairs if not _same_pair(gone, p, doc["mac_address"])]
        if len(kept) == len(pairs):
            raise click.BadParameter(f"{gone['ip_address']} is no allowed address pair of "
                                     f"port {doc['id']}", param_hint="--allowed-address")
        pairs = kept
    out.one(client.update("port", doc["id"], allowed_address_pairs=pairs))


@cli.command()
@click.argument("ports", nargs=-1, required=True)
@client_options
def delete(client: Client, ports: tuple[str, ...]) -> None:
    """Delete ports (their addresses and MACs are released)."""
    delete_all(client, "port", ports)
