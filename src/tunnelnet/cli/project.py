"""`tunnelnet project list|show|create|set|delete`."""

from __future__ import annotations

import click

from tunnelnet.cli._api import Output, client_options, drop_none, output_options
from tunnelnet.client import Client

COLUMNS = ("id", "name", "description")


@click.group()
def cli() -> None:
    """Projects (tenants): owners of networks, subnets, ports and tokens."""


@cli.command("list")
@client_options
@output_options
def list_(client: Client, out: Output) -> None:
    """List projects (a project token sees its own)."""
    out.many(client.list("project"), COLUMNS)


@cli.command()
@click.argument("project")
@client_options
@output_options
def show(client: Client, out: Output, project: str) -> None:
    """Show a project."""
    out.one(client.show("project", project))


@cli.command()
@click.argument("name")
@click.option("--id", "project_id", help="Project id (default: the name).")
@click.option("--description")
@client_options
@output_options
def create(client: Client, out: Output, name: str, project_id: str | None,
           description: str | None) -> None:  # fmt: skip
    """Create a project (admin)."""
    out.one(client.create("project", **drop_none(name=name, id=project_id,
                                                 description=description)))  # fmt: skip


@cli.command("set")
@click.argument("project")
@click.option("--name")
@click.option("--description")
@client_options
@output_options
def set_(client: Client, out: Output, project: str, name: str | None,
         description: str | None) -> None:  # fmt: skip
    """Rename or describe a project (admin)."""
    fields = drop_none(name=name, description=description)
    if not fields:
        raise click.UsageError("nothing to set: give --name or --description")
    out.one(client.update("project", project, **fields))


@cli.command()
@click.argument("projects", nargs=-1, required=True)
@client_options
def delete(client: Client, projects: tuple[str, ...]) -> None:
    """Delete projects (admin); refused while they own resources. Their tokens go too."""
    for project in projects:
        client.delete("project", project)
