"""Shared parts of the client commands: --url/--token, output formats, name-or-id lookup.

Output follows the openstack CLI: a table by default, `-f json` (or `--json`) for data,
`-f value` for scripts (values only, tab-separated), `-c COLUMN` to pick columns. JSON goes to
stdout uncoloured; errors come from the client as TunnelnetError and main prints one line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from tunnelnet.client import Client, ClientError, Resource
from tunnelnet.client.endpoints import DEFAULT_URL

F = TypeVar("F", bound=Callable[..., Any])


URL_HELP = ("Controller URL, or several separated by commas (a request that cannot connect "
            "to one goes to the next): https://HOST:PORT, http://HOST:PORT (loopback only "
            "without --insecure-http) or unix:PATH")
CA_HELP = "CA certificate (PEM) that signed the controllers' certificates [env TUNNELNET_CA]."
INSECURE_HELP = ("Allow plain http:// to a host other than loopback: the token crosses the "
                 "network in clear. Loopback and unix: need no flag, they never leave this "
                 "host [env TUNNELNET_INSECURE_HTTP].")


def connection_options(func: F) -> F:
    """--url, --token, --ca-file and --insecure-http, passed on as keyword arguments."""
    for decorator in reversed((
        click.option("--url", envvar="TUNNELNET_URL", default=DEFAULT_URL, show_default=True,
                     help=f"{URL_HELP} [env TUNNELNET_URL]."),
        click.option("--token", envvar="TUNNELNET_TOKEN", default="",
                     help="X-Auth-Token to send [env TUNNELNET_TOKEN]."),
        click.option("--ca-file", envvar="TUNNELNET_CA", default=None,
                     type=click.Path(dir_okay=False), help=CA_HELP),
        click.option("--insecure-http", envvar="TUNNELNET_INSECURE_HTTP", is_flag=True,
                     help=INSECURE_HELP),
    )):  # fmt: skip
        func = decorator(func)
    return func


def client_options(func: F) -> F:
    """Adds the connection options and passes a ready `client` to the command."""

    @connection_options
    @functools.wraps(func)
    def wrapper(*args: Any, url: str, token: str, ca_file: str | None, insecure_http: bool,
                **kwargs: Any) -> Any:
        with Client(url, token, ca_file=ca_file, insecure_http=insecure_http) as client:
            return func(*args, client=client, **kwargs)

    return wrapper  # type: ignore[return-value]


def output_options(func: F) -> F:
    @click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "value"]),
                  default="table", show_default=True, help="Output format.")  # fmt: skip
    @click.option("--json", "as_json", is_flag=True, help="Same as -f json.")
    @click.option("-c", "--column", "columns", multiple=True,
                  help="Show only this column (repeatable).")  # fmt: skip
    @functools.wraps(func)
    def wrapper(*args: Any, fmt: str, as_json: bool, columns: tuple[str, ...], **kw: Any) -> Any:
        return func(*args, out=Output("json" if as_json else fmt, list(columns)), **kw)

    return wrapper  # type: ignore[return-value]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ", ".join(_cell_item(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}='{_cell(v)}'" for k, v in value.items())
    return str(value)


def _cell_item(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}='{_cell(v)}'" for k, v in value.items())
    return _cell(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line])


class Output:
    def __init__(self, fmt: str, columns: list[str]) -> None:
        self.fmt = fmt
        self.columns = columns

    def _pick(self, names: Sequence[str]) -> list[str]:
        if not self.columns:
            return list(names)
        return self.columns

    def many(self, items: Sequence[Resource], default_columns: Sequence[str]) -> None:
        columns = self._pick(default_columns)
        if self.fmt == "json":
            shown = [{c: i.get(c) for c in columns} for i in items] if self.columns else items
            click.echo(json.dumps(list(shown), indent=2, sort_keys=True))
            return
        rows = [[_cell(i.get(c)) for c in columns] for i in items]
        if self.fmt == "value":
            for row in rows:
                click.echo("\t".join(row))
            return
        click.echo(_table(columns, rows))

    def one(self, item: Resource) -> None:
        names = self._pick(sorted(item))
        if self.fmt == "json":
            shown = {n: item.get(n) for n in names} if self.columns else item
            click.echo(json.dumps(shown, indent=2, sort_keys=True))
            return
        if self.fmt == "value":
            for name in names:
                click.echo(_cell(item.get(name)))
            return
        click.echo(_table(["Field", "Value"], [[n, _cell(item.get(n))] for n in names]))


def resolve(client: Client, resource: str, name_or_id: str) -> Resource:
    """A resource by id, or by name when exactly one has that name (as openstack does)."""
    try:
        return client.show(resource, name_or_id)
    except ClientError as exc:
        if exc.status != 404:
            raise
    matches = client.list(resource, name=name_or_id)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ClientError(f"no {resource} with name or id {name_or_id!r}", 404, "NotFound")
    raise ClientError(
        f"{len(matches)} {resource}s are named {name_or_id!r}; use an id", 409, "Ambiguous"
    )


def enable_option(func: F) -> F:
    return click.option("--enable/--disable", "admin_state_up", default=None,
                        help="Administrative state (admin_state_up).")(func)  # fmt: skip


def drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def delete_all(client: Client, resource: str, names: Sequence[str]) -> None:
    for name in names:
        client.delete(resource, resolve(client, resource, name)["id"])
