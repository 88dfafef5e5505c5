"""`tunnelnet token create|delete`: project and agent tokens (admin)."""

from __future__ import annotations

import click

from tunnelnet.cli._api import Output, client_options, output_options
from tunnelnet.client import Client


@click.group()
def cli() -> None:
    """Tokens for projects and agents; the secret is shown once, the server keeps a hash."""


@cli.command()
@click.option("--project", help="The project the token acts for (made if missing).")
@click.option("--agent", "is_agent", is_flag=True, help="An agent token instead.")
@client_options
@output_options
def create(client: Client, out: Output, project: str | None, is_agent: bool) -> None:
    """Create a token (admin)."""
    if is_agent == (project is not None):
        raise click.UsageError("give exactly one of --project P or --agent")
    out.one(client.create_token(project=project, role="agent" if is_agent else "project"))


@cli.command()
@click.argument("token")
@client_options
def delete(client: Client, token: str) -> None:
    """Revoke a token (admin)."""
    client.request("DELETE", f"/v2.0/tokens/{token}")
