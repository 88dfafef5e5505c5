"""The agents' two most frequent requests answered without FastAPI's machinery.

Every agent long-polls `GET /v2.0/events` about twice a second while a cloud fills, and lists
`GET /v2.0/watch/ports` once per network it comes onto. Their answers are bytes the watch hub
encoded already (server/watch.py); what was left was FastAPI's per-request work: routing over
every route, solving the parameters and dependencies, the exception and exit-stack layers,
about half the controller's CPU at 300 agents. This layer answers those two requests itself
when they are exactly what an agent sends: a configured admin or agent token, parameters
that are plain numbers and a host name. Anything else (a project token, `noauth`, a malformed
or repeated parameter, a resync, a hub that is behind, a failure) goes on to the FastAPI
routes in app.py, which remain the definition of these endpoints: their answers, errors and
OpenAPI description are theirs, and this layer must give the same bytes where it answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from tunnelnet.api import REVISION_HEADER
from tunnelnet.server import watch
from tunnelnet.server.auth import Caller, configured_caller
from tunnelnet.server.controller import Controller
from tunnelnet.server.errors import ApiError
from tunnelnet.server.token_gate import TOKEN_HEADER, Asgi, Receive, Scope, Send

_NUMBER = re.compile(r"[0-9]{1,15}")
_SECONDS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?")
_EVENTS = "/v2.0/events"
_LISTING = "/v2.0/watch/ports"
_MAX_NAME = 255  # app.py's Host and network_id limits
_REVISION = REVISION_HEADER.lower().encode()


def _params(scope: Scope, allowed: tuple[str, ...]) -> dict[str, str] | None:
    """The query's parameters as Starlette reads them; None when one is unknown or repeated."""
    found: dict[str, str] = {}
    for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if key not in allowed or key in found:
            return None
        found[key] = value
    return found


def _revision(text: str | None) -> int | None:
    return 0 if text is None else int(text) if _NUMBER.fullmatch(text) else None


def _name(text: str | None) -> str | None:
    """A host or network id within app.py's limits; None for an absent or odd one."""
    return text if text is not None and 0 < len(text) <= _MAX_NAME else None


class AgentFastPath:
    """ASGI middleware: see the module doc. `controller` is read at each request (the app
    holds it in its state), `hub` likewise (made at startup)."""

    def __init__(self, app: Asgi, controller: Callable[[], Controller],
                 hub: Callable[[], watch.Hub | None]) -> None:
        self.app = app
        self.controller = controller
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in (
                _EVENTS, _LISTING):
            answer = await self._answer(scope)
            if answer is not None:
                body, revision = answer
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-length", b"%d" % len(body)),
                    (b"content-type", b"application/json"),
                    (_REVISION, b"%d" % revision)]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _caller(self, scope: Scope) -> Caller | None:
        config = self.controller().config
        if config.auth_strategy == "noauth":
            return None
        tokens = [value for name, value in scope["headers"] if name == TOKEN_HEADER]
        if len(tokens) != 1:
            return None
        try:
            return configured_caller(config.admin_token, config.agent_token,
                                     tokens[0].decode("latin-1"))
        except ApiError:
            return None

    async def _answer(self, scope: Scope) -> tuple[bytes, int] | None:
        hub = self.hub()
        caller = self._caller(scope)
        if hub is None or caller is None:
            return None
        try:
            if scope["path"] == _EVENTS:
                return await self._events(scope, hub, caller)
            return await self._listing(scope, hub, caller)
        except Exception:  # a failure: the routes answer it, in Neutron's shape
            return None

    async def _events(self, scope: Scope, hub: watch.Hub, caller: Caller
                      ) -> tuple[bytes, int] | None:
        params = _params(scope, ("since", "timeout", "host"))
        if params is None:
            return None
        since = _revision(params.get("since"))
        wait = params.get("timeout", "30")
        host = params.get("host")
        if since is None or not _SECONDS.fullmatch(wait) or (
                host is not None and _name(host) is None):
            return None
        timeout = float(wait)
        if not 0 <= timeout <= 300 or not math.isfinite(timeout):
            return None
        result = await watch.poll(hub, caller, since, timeout, host)
        if result is None:
            return None  # resync: the route says so
        lines, revision = result
        return watch.poll_body(lines, revision), revision

    async def _listing(self, scope: Scope, hub: watch.Hub, caller: Caller
                       ) -> tuple[bytes, int] | None:
        if not caller.sees_all:
            return None  # the route refuses it
        params = _params(scope, ("network_id", "since"))
        if params is None:
            return None
        network_id = _name(params.get("network_id"))
        since = _revision(params.get("since"))
        if network_id is None or since is None:
            return None
        return await hub.network_listing(network_id, since, timeout=5.0)
