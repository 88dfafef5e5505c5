"""What every long-running agent command shares: how it reaches the controller, where it
logs, and how it stops on SIGTERM or Ctrl-C.

The Open vSwitch agent and the DHCP agent are told the same things the same way, so a host's
configuration (or its systemd units, docs/deploy.md) can give both the same lines.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from tunnelnet.cli._api import CA_HELP, INSECURE_HELP
from tunnelnet.client.endpoints import DEFAULT_URL

Command = TypeVar("Command", bound=Callable[..., Any])

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def controller_options(url_help: str, token_help: str) -> Callable[[Command], Command]:
    """--controller (a URL or several, comma-separated), --ca-file, --insecure-http, --token."""
    def add(command: Command) -> Command:
        for option in reversed((
            click.option("--controller", "--server", "url", envvar="TUNNELNET_URL",
                         default=DEFAULT_URL, show_default=True, help=url_help),
            click.option("--ca-file", envvar="TUNNELNET_CA", default=None,
                         type=click.Path(dir_okay=False), help=CA_HELP),
            click.option("--insecure-http", envvar="TUNNELNET_INSECURE_HTTP", is_flag=True,
                         help=INSECURE_HELP),
            click.option("--token", envvar="TUNNELNET_TOKEN", default="", help=token_help),
        )):
            command = option(command)
        return command
    return add


def log_options(command: Command) -> Command:
    """--log-file and --log-level."""
    command = click.option("--log-level", default="info", show_default=True,
                           type=click.Choice(["debug", "info", "warning", "error"],
                                             case_sensitive=False))(command)
    return click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Log here instead of stderr.")(command)


def start_logging(log_file: Path | None, log_level: str) -> None:
    logging.basicConfig(filename=log_file, level=log_level.upper(), format=_LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per long poll otherwise


def run_until_signalled(what: str, run: Callable[[threading.Event], None],
                        cleanup: Callable[[], None]) -> None:
    """Run ``run(stop)`` until SIGTERM or SIGINT sets ``stop``; ``cleanup`` runs however it
    ends."""
    stop = threading.Event()
    main_pid = os.getpid()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != main_pid:
            # a child forked into a namespace (pyroute2 does) inherits this handler: let it die
            os._exit(128 + signum)
        logging.getLogger(__name__).info("signal %d: stopping the %s", signum, what)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        run(stop)
    finally:
        cleanup()
