"""Running the controller: open the store, build the app, serve HTTP on a socket we bind.

Binding the socket ourselves lets `--listen 127.0.0.1:0` pick a free port and report the real
one on stdout (tests and the lab read it), instead of racing for a port chosen beforehand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from tunnelnet.server.app import create_app
from tunnelnet.server.auth import new_token
from tunnelnet.server.config import ConfigError, ServerConfig, check_transport
from tunnelnet.server.controller import Controller
from tunnelnet.store.base import Store
from tunnelnet.store.url import Backend, StoreUrl, open_store, parse

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """Ends the watch streams as soon as a stop is asked for; uvicorn would otherwise wait
    for them (they never end by themselves) before it shuts down. With TLS, serves it on TCP
    only: the unix socket stays plain HTTP for this host's own clients."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        unix = [s for s in sockets or [] if s.family == socket.AF_UNIX]
        if not unix or self.config.ssl is None:
            await super().startup(sockets)
            return
        # uvicorn gives every socket one ssl setting; the unix socket gets its own plain
        # server, with uvicorn's protocol for the same app, state and connections
        await super().startup([s for s in sockets or [] if s.family != socket.AF_UNIX])
        loop = asyncio.get_running_loop()
        config = self.config

        def plain_protocol() -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state,
                _loop=loop)
            return protocol

        for sock in unix:
            self.servers.append(await loop.create_server(plain_protocol, sock=sock, ssl=None,
                                                         backlog=config.backlog))

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        hub = getattr(self._app.state, "hub", None)
        if hub is not None:
            hub.close()
        super().handle_exit(sig, frame)


def _uvicorn(app: FastAPI, tls: ssl.SSLContext | None = None) -> _Server:
    # the grace period is a backstop for streams of a thread-run server (no signal there)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3,
        # longer than a client keeps an idle connection (httpx: 5 s), so the client closes it
        # first; at uvicorn's 5 s both closed it at once and a reused one failed unanswered
        timeout_keep_alive=65,
    )
    config.load()
    # our own context rather than uvicorn's file options: loaded (and any fault named)
    # before anything is bound, and with TLS 1.2 as the floor
    config.ssl = tls
    return _Server(config, app)


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context from its certificate and key files, or None for plain HTTP."""
    check_transport(config)
    if not config.tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename or 'a file'} does not exist "
                          f"(--tls-cert {config.tls_cert}, --tls-key {config.tls_key})") from None
    except PermissionError as exc:
        raise ConfigError(f"TLS: cannot read {exc.filename}: permission denied") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS: certificate {config.tls_cert} and key {config.tls_key} cannot "
                          f"be used together ({getattr(exc, 'reason', None) or exc}): are they "
                          "PEM files, the key unencrypted and the one of this certificate?") \
            from None
    return context


def base_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


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


def store_url(config: ServerConfig) -> StoreUrl:
    """The store the config names: `store` when set (flag, environment or file), else the
    SQLite file `db`."""
    return parse(config.store) if config.store else StoreUrl(Backend.SQLITE, path=config.db)


def _open_store(config: ServerConfig) -> Store:
    url = store_url(config)
    if url.backend is Backend.ETCD and not config.admin_token:
        # a token generated here would be valid on this controller only
        raise ConfigError(
            f"the store {url} is shared by every controller on it: give them one admin token "
            "(TUNNELNET_ADMIN_TOKEN or admin_token in the config file)"
        )
    return open_store(url)


def _admin_token(config: ServerConfig) -> ServerConfig:
    """Without a configured admin token, make one and leave it next to the database (0600):
    a server that anyone on the machine could administer would be a poor default."""
    if config.admin_token:
        return config
    path = store_url(config).path + ".admin-token"
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


class BackgroundServer:
    """The controller on a thread of this process (the lab's simulation, tests): same app,
    same store, real HTTP on loopback. `url` is set once it accepts connections."""

    def __init__(self, config: ServerConfig) -> None:
        if not config.admin_token:
            raise ConfigError("a background server needs an admin token in its config")
        self.config = config
        tls = tls_context(config)
        self._sock = _bind(config.host, config.port)  # first: a failure leaves nothing open
        try:
            self.store = _open_store(config)
        except BaseException:
            self._sock.close()
            raise
        self.controller = Controller(self.store, config)
        host, port = self._sock.getsockname()[:2]
        self.url = base_url(host, port, tls is not None)
        self._server = _uvicorn(create_app(self.controller), tls)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise ConfigError(f"the controller did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
        self.store.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind_unix(path: str) -> socket.socket:
    """A unix socket beside TCP: the lab's agents in other network namespaces reach the
    controller through the file system, so no control traffic crosses the underlay."""
    if os.path.exists(path):
        os.unlink(path)  # a socket file left by a previous run answers nobody
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on unix socket {path}: {exc.strerror}") from exc
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def serve(config: ServerConfig, unix_path: str | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: on an etcd store that is a line per store call
    logging.getLogger("httpx").setLevel(logging.WARNING)
    tls = tls_context(config)  # first: a bad certificate is told before anything is opened
    store = _open_store(config)
    config = _admin_token(config)
    sock = _bind(config.host, config.port)
    sockets = [sock]
    if unix_path is not None:
        sockets.append(_bind_unix(unix_path))
    host, port = sock.getsockname()[:2]
    app = create_app(Controller(store, config))
    server = _uvicorn(app, tls)

    def stopped(signum: int, _frame: object) -> None:
        # uvicorn shuts down gracefully, then re-raises the signal to the previous handler:
        # this one, so SIGTERM/SIGINT end the process with status 0 after a clean close
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    # announced only now: whoever reads this line may signal us at once
    print(
        f"tunnelnet server: listening on {base_url(host, port, tls is not None)}"
        + (f" and unix:{unix_path}" if unix_path else ""),
        flush=True,
    )
    try:
        server.run(sockets=sockets)
    finally:
        for each in sockets:
            each.close()
        if unix_path is not None and os.path.exists(unix_path):
            os.unlink(unix_path)
        store.close()
