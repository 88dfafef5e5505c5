"""`tunnelnet server`: the controller (REST API, store, watch stream)."""

from __future__ import annotations

import click

from tunnelnet.server import config as server_config


@click.command()
@click.option(
    "--db",
    envvar="TUNNELNET_DB",
    help="SQLite database file (default ~/.local/state/tunnelnet/server.db) [env TUNNELNET_DB].",
)
@click.option(
    "--store",
    envvar="TUNNELNET_STORE",
    help="Where the state lives: sqlite:PATH (the default, with --db's path) or "
    "etcd://HOST:PORT[,HOST:PORT...][?prefix=/name] to share it with other controllers; "
    "overrides --db when given [env TUNNELNET_STORE].",
)
@click.option(
    "--listen",
    envvar="TUNNELNET_LISTEN",
    help="HOST:PORT to serve on (default 127.0.0.1:9696; port 0 picks one) [env TUNNELNET_LISTEN].",
)
@click.option(
    "--unix",
    "unix_path",
    type=click.Path(dir_okay=False),
    help="Also serve on this unix socket (clients use the URL unix:PATH).",
)
@click.option(
    "--config",
    "config_file",
    envvar="TUNNELNET_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML settings file [env TUNNELNET_CONFIG].",
)
def cli(
    db: str | None,
    store: str | None,
    listen: str | None,
    unix_path: str | None,
    config_file: str | None,
) -> None:
    """Run the controller: tenants, networks, subnets, ports and agents over HTTP.

    The admin token comes from TUNNELNET_ADMIN_TOKEN or the config file; without one, a token
    is generated and written next to the database (DB.admin-token, mode 0600); an etcd store
    needs one configured, the same on every controller sharing it.
    """
    from tunnelnet.server.runner import serve

    config = server_config.load(config_file, db=db, store=store, listen=listen)
    serve(config, unix_path)
