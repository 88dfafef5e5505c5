"""`tunnelnet agents list|show|set|delete`: the controller's view of the hypervisor agents.

(`tunnelnet agent` is the agent daemon itself; these commands only read and manage its record
on the controller, like `openstack network agent ...`.)
"""

from __future__ import annotations

import click

from tunnelnet.cli._api import Output, client_options, drop_none, enable_option, output_options
from tunnelnet.client import Client, ClientError, Resource

COLUMNS = ("id", "host", "agent_type", "alive", "admin_state_up", "heartbeat_timestamp")


def _resolve(client: Client, agent: str) -> Resource:
    try:
        return client.show("agent", agent)
    except ClientError as exc:
        if exc.status != 404:
            raise
    matches = client.list("agent", host=agent)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ClientError(f"no agent with id or host {agent!r}", 404, "NotFound")
    raise ClientError(f"{len(matches)} agents run on host {agent!r}; use an id", 409, "Ambiguous")


@click.group()
def cli() -> None:
    """Agents registered with the controller (admin or agent token)."""


@cli.command("list")
@click.option("--host", help="Only agents of this host.")
@click.option("--alive/--dead", default=None, help="Only live (or dead) agents.")
@client_options
@output_options
def list_(client: Client, out: Output, host: str | None, alive: bool | None) -> None:
    """List agents and whether they are alive."""
    out.many(client.list("agent", **drop_none(host=host, alive=alive)), COLUMNS)


@cli.command()
@click.argument("agent")
@client_options
@output_options
def show(client: Client, out: Output, agent: str) -> None:
    """Show an agent (by id or host)."""
    out.one(_resolve(client, agent))


@cli.command("set")
@click.argument("agent")
@click.option("--description")
@enable_option
@client_options
@output_options
def set_(client: Client, out: Output, agent: str, description: str | None,
         admin_state_up: bool | None) -> None:  # fmt: skip
    """Change an agent's description or administrative state (admin)."""
    fields = drop_none(description=description, admin_state_up=admin_state_up)
    if not fields:
        raise click.UsageError("nothing to set: give --description or --enable/--disable")
    out.one(client.update("agent", _resolve(client, agent)["id"], **fields))


@cli.command()
@click.argument("agents", nargs=-1, required=True)
@client_options
def delete(client: Client, agents: tuple[str, ...]) -> None:
    """Forget agents (admin); their tunnels are removed on every peer."""
    for agent in agents:
        client.delete("agent", _resolve(client, agent)["id"])
