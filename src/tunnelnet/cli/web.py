"""``tunnelnet web``: the lab as a page, with live state and animated traces."""

from __future__ import annotations

import click

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.state import lab_dir


class WebError(TunnelnetError):
    """The web page cannot be served as asked."""


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WebError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


@click.command("web")
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="Address and port to serve the page on.",
)
@click.option(
    "--dir",
    "directory",
    envvar="TUNNELNET_LAB_DIR",
    default=None,
    help="Run directory of the lab (env TUNNELNET_LAB_DIR).",
)
def cli(listen: str, directory: str | None) -> None:
    """Serve one page: the data centre (hypervisors, br-int/br-tun, tunnels, VMs coloured by
    tenant), refreshed live; pick two VMs to watch a packet's journey; click a bridge for its
    flow table."""
    import uvicorn

    from tunnelnet.trace.open import open_lab
    from tunnelnet.web.app import create_app
    from tunnelnet.web.status import DirectoryStatus

    host, port = _listen(listen)
    directory_ = lab_dir(directory)
    open_lab(directory_)  # a clear error now if no lab is up, not on every request
    # the lab is opened afresh per request: one taken down shows as a banner on the page,
    # and one brought up again (of either kind) is drawn again
    app = create_app(lambda: open_lab(directory_), DirectoryStatus(directory_))
    click.echo(f"tunnelnet web: http://{host}:{port}/ (lab {directory_})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
