"""`tunnelnet store show|copy`: look into a controller's store, or move it to another backend."""

from __future__ import annotations

import json
import os

import click

from tunnelnet.store import Store, StoreError, open_store
from tunnelnet.store.copy import Contents, contents, copy_store
from tunnelnet.store.url import Backend, parse

_URLS = "sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...][?prefix=/name]"


def _open_existing(url: str) -> Store:
    # opening a SQLite path that does not exist would create an empty database and report it
    parsed = parse(url)
    if parsed.backend is Backend.SQLITE and not os.path.exists(parsed.path):
        raise StoreError(f"no SQLite store at {parsed.path!r}")
    return open_store(parsed)


def _print_contents(title: str, found: Contents) -> None:
    click.echo(f"{title}: revision {found.revision}")
    for kind, count in found.documents.items():
        click.echo(f"  {kind:<14} {count:>8} documents")
    for family, count in found.claims.items():
        click.echo(f"  {family:<14} {count:>8} claims")


@click.group(help="A controller's store: what it holds, and copying it into an empty one.\n\n"
             f"Store URLs are the server's --store values: {_URLS}.")
def cli() -> None:
    pass


@cli.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(url: str, as_json: bool) -> None:
    """The store's revision and its documents per kind and claims per pool."""
    store = _open_existing(url)
    try:
        found = contents(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    else:
        _print_contents(url, found)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def copy(source: str, target: str, as_json: bool) -> None:
    """Copy everything in SOURCE into the empty store TARGET, then check the copy.

    Stop the controllers using SOURCE first. Agents connected to the new store resume where
    they were if they had seen SOURCE's last change, and list everything again otherwise.

    \b
    Example, from one controller's SQLite file to a three-member etcd cluster:
      tunnelnet store copy sqlite:/var/lib/tunnelnet/server.db \\
          etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
    """
    src = _open_existing(source)
    try:
        dst = open_store(target)
    except BaseException:
        src.close()
        raise
    shown: dict[str, int] = {}

    def progress(what: str, done: int, total: int) -> None:
        # a line per tenth, so a copy of 100,000 documents says it is alive without flooding
        step = max(total // 10, 1)
        if done == total or done // step != shown.get(what, -1):
            shown[what] = done // step
            click.echo(f"copied {done}/{total} {what}", err=True)

    try:
        report = copy_store(src, dst, progress)
    finally:
        src.close()
        dst.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_contents(f"copied {source} -> {target} in {report.seconds:.1f} s", report.target)
    click.echo(f"the copy's change log continues from revision {report.target.revision}")
