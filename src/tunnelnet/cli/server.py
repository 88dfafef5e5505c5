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
    help="HOST:PORT to serve on (default 127.0.0.1:9696; port 0 picks one); an address other "
    "than loopback needs --tls-cert/--tls-key or --insecure-http [env TUNNELNET_LISTEN].",
)
@click.option(
    "--unix",
    "unix_path",
    type=click.Path(dir_okay=False),
    help="Also serve on this unix socket (clients use the URL unix:PATH).",
)
@click.option(
    "--tls-cert",
    envvar="TUNNELNET_TLS_CERT",
    type=click.Path(dir_okay=False),
    help="Serve HTTPS with this PEM certificate (with its chain); needs --tls-key "
    "[env TUNNELNET_TLS_CERT].",
)
@click.option(
    "--tls-key",
    envvar="TUNNELNET_TLS_KEY",
    type=click.Path(dir_okay=False),
    help="The certificate's private key, PEM, unencrypted [env TUNNELNET_TLS_KEY].",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Allow plain HTTP on an address other than loopback. Every request carries a "
    "token, readable in clear by anyone on the path: use TLS instead unless the network is "
    "yours alone. Loopback and the unix socket need no flag: they never leave this host.",
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
    tls_cert: str | None,
    tls_key: str | None,
    insecure_http: bool | None,
    config_file: str | None,
) -> None:
    """Run the controller: tenants, networks, subnets, ports and agents over HTTP(S).

    The admin token comes from TUNNELNET_ADMIN_TOKEN or the config file; without one, a token
    is generated and written next to the database (DB.admin-token, mode 0600); an etcd store
    needs one configured, the same on every controller sharing it.

    With --tls-cert and --tls-key the TCP listener speaks HTTPS only (clients verify it with
    --ca-file or TUNNELNET_CA); without them it serves plain HTTP on loopback only, unless
    --insecure-http. The unix socket (--unix) is always plain HTTP, for this host's clients.
    """
    from tunnelnet.server.runner import serve

    config = server_config.load(config_file, db=db, store=store, listen=listen,
                                tls_cert=tls_cert, tls_key=tls_key, insecure_http=insecure_http)
    serve(config, unix_path)
