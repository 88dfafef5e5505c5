"""Running the controller: open the store, build the app, serve HTTP on a socket we bind.

Binding the socket ourselves lets `--listen 127.0.0.1:0` pick a free port and report the real
one on stdout (tests and the lab read it), instead of racing for a port chosen beforehand.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn

from tunnelnet.server.app import create_app
from tunnelnet.server.auth import new_token
from tunnelnet.server.config import ConfigError, ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit this (Linux): without it, a response written as headers then
    # body waits for the client's delayed ACK, 40 ms per request on a kept-alive connection
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def _admin_token(config: ServerConfig) -> ServerConfig:
    """Without a configured admin token, make one and leave it next to the database (0600):
    a server that anyone on the machine could administer would be a poor default."""
    if config.admin_token:
        return config
    path = config.db + ".admin-token"
    if os.path.exists(path):
        with open(path, encoding="ascii") as fh:
            token = fh.read().strip()
    else:
        token = new_token()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
    print(f"tunnelnet server: admin token in {path}", file=sys.stderr, flush=True)
    return config.with_overrides(admin_token=token)


def serve(config: ServerConfig) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = SqliteStore(config.db)
    config = _admin_token(config)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(Controller(store, config))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    print(f"tunnelnet server: listening on http://{shown}:{port}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()
