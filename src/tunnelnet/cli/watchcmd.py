"""`tunnelnet watch`: follow the controller's change stream, as an agent sees it."""

from __future__ import annotations

import json

import click

from tunnelnet.cli._api import client_options
from tunnelnet.client import Client


@click.command()
@click.option("--since", type=int, help="Start after this revision (default: from now).")
@click.option("--timeout", type=float, help="Stop after this many seconds.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="One line per event, or one JSON record per line.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as -f json.")
@client_options
def cli(client: Client, since: int | None, timeout: float | None, fmt: str,
        as_json: bool) -> int:  # fmt: skip
    """Print changes (revision, action, resource, id, name) as they happen.

    Ends after --timeout, when the server stops, or with `resync` when --since is older than
    what the controller keeps (exit status 2 then: list again and watch from that revision).
    """
    for event in client.watch(since=since, timeout=timeout):
        if as_json or fmt == "json":
            click.echo(json.dumps(event.as_dict(), sort_keys=True))
        elif event.type == "event" and event.object is not None:
            name = event.object.get("name") or event.object.get("host") or ""
            click.echo(f"{event.revision:>8}  {event.action:<6}  {event.resource:<8}  "
                       f"{event.object.get('id', '')}  {name}")  # fmt: skip
        if event.type == "resync":
            click.echo(f"resync: revision {since} is gone; list again and watch from "
                       f"{event.revision}", err=True)  # fmt: skip
            return 2
    return 0
