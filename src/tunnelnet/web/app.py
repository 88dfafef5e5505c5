"""The web page's HTTP side: the page, its static files, and three JSON endpoints.

A lab that is down or does not answer is a 503 whose JSON says so (``{"detail": ...,
"lab_down": true}``), never a 500: the page shows it as a banner and keeps asking, so it
recovers by itself when the lab is back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.names import physical_bridge
from tunnelnet.trace.journey import trace
from tunnelnet.trace.probe import PROTOCOLS
from tunnelnet.trace.view import LabView
from tunnelnet.web.state import snapshot
from tunnelnet.web.status import StatusSource

STATIC = Path(__file__).parent / "static"
BRIDGES = ("br-int", "br-tun", physical_bridge())


class LabDown(Exception):
    """The lab is not up, or does not answer the questions every page needs."""


def _down_message(exc: Exception) -> str:
    return (f"The lab is down or unreachable: {exc}. The page asks again every 2 seconds "
            "and redraws the lab when it is back.")


def create_app(lab_factory: Callable[[], LabView], status: StatusSource | None = None) -> FastAPI:
    """``lab_factory`` is called per request, so a lab that changed (a VM added, a switch
    restarted, the lab taken down and brought up again) is seen as it is now."""
    app = FastAPI(title="tunnelnet", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LabDown)
    def lab_down(_request: Request, exc: LabDown) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "lab_down": True}, status_code=503)

    def lab() -> LabView:
        try:
            return lab_factory()
        except (TunnelnetError, OSError) as exc:
            raise LabDown(_down_message(exc)) from exc

    def answers(view: LabView) -> None:
        """A LabDown unless the lab answers its simplest question."""
        try:
            view.hypervisors()
        except (TunnelnetError, OSError) as exc:
            raise LabDown(_down_message(exc)) from exc

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        view = lab()
        try:
            return snapshot(view, status)
        except (TunnelnetError, OSError) as exc:
            raise LabDown(_down_message(exc)) from exc

    @app.get("/api/trace")
    def trace_(
        src: str, dst: str, proto: str = Query("icmp"), dport: int | None = None
    ) -> dict[str, Any]:
        if proto not in PROTOCOLS:
            raise HTTPException(400, f"proto {proto!r}: one of {', '.join(PROTOCOLS)}")
        view = lab()
        try:
            return trace(view, src, dst, proto, dport).to_json()
        except (TunnelnetError, OSError) as exc:
            answers(view)  # the lab went away: a 503, not the user's mistake
            raise HTTPException(400, str(exc)) from exc

    @app.get("/api/flows")
    def flows(host: str, bridge: str) -> dict[str, Any]:
        if bridge not in BRIDGES:
            raise HTTPException(400, f"bridge {bridge!r}: one of {', '.join(BRIDGES)}")
        view = lab()
        try:
            known = view.hypervisors()
        except (TunnelnetError, OSError) as exc:
            raise LabDown(_down_message(exc)) from exc
        if host not in known:
            raise HTTPException(404, f"no hypervisor {host!r}")
        try:
            return {"host": host, "bridge": bridge, "flows": view.switch(host).dump_flows(bridge)}
        except TunnelnetError as exc:
            raise HTTPException(503, str(exc)) from exc

    return app
