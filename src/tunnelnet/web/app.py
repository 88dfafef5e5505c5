"""The web page's HTTP side: the page, its static files, and four JSON endpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from tunnelnet.errors import TunnelnetError
from tunnelnet.trace.journey import trace
from tunnelnet.trace.probe import PROTOCOLS
from tunnelnet.trace.view import LabView
from tunnelnet.web.state import StatusSource, snapshot

STATIC = Path(__file__).parent / "static"
BRIDGES = ("br-int", "br-tun")


def create_app(lab_factory: Callable[[], LabView], status: StatusSource | None = None) -> FastAPI:
    """``lab_factory`` is called per request, so a lab that changed (a VM added, a switch
    restarted) is seen as it is now."""
    app = FastAPI(title="tunnelnet", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def lab() -> LabView:
        try:
            return lab_factory()
        except TunnelnetError as exc:
            raise HTTPException(503, str(exc)) from exc

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return snapshot(lab(), status)

    @app.get("/api/trace")
    def trace_(
        src: str, dst: str, proto: str = Query("icmp"), dport: int | None = None
    ) -> dict[str, Any]:
        if proto not in PROTOCOLS:
            raise HTTPException(400, f"proto {proto!r}: one of {', '.join(PROTOCOLS)}")
        try:
            return trace(lab(), src, dst, proto, dport).to_json()
        except TunnelnetError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get("/api/flows")
    def flows(host: str, bridge: str) -> dict[str, Any]:
        if bridge not in BRIDGES:
            raise HTTPException(400, f"bridge {bridge!r}: one of {', '.join(BRIDGES)}")
        view = lab()
        if host not in view.hypervisors():
            raise HTTPException(404, f"no hypervisor {host!r}")
        try:
            return {"host": host, "bridge": bridge, "flows": view.switch(host).dump_flows(bridge)}
        except TunnelnetError as exc:
            raise HTTPException(503, str(exc)) from exc

    return app
