"""The first gate of every request: no X-Auth-Token header, no answer but 401.

Each route judges its token itself (`app._auth`), but FastAPI validates a request's body
before the route runs, so without this gate a request with no token and a bad body would get
a 400 that describes what the body lacks. The gate looks at the header only (no store read,
no blocking call on the event loop): whether the token is valid is still the route's call.
What answers without a token by design is listed here, with why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from tunnelnet.server.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_HEADER = b"x-auth-token"
# version discovery and the extension list: keystoneauth discovers before it has a token
# (server/app.py `_discovery_routes`); the API's description (routes and schemas, no data)
PUBLIC_PATHS = ("/", "/v2.0", "/v2.0/", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                "/redoc")
PUBLIC_PREFIXES = ("/v2.0/extensions",)


def is_public(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    return path in PUBLIC_PATHS or any(
        path == p or path.startswith(p + "/") for p in PUBLIC_PREFIXES)


class TokenGate:
    def __init__(self, app: Asgi, enabled: Callable[[], bool]) -> None:
        self.app = app
        self.enabled = enabled  # off under auth_strategy = noauth, where no token is needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and self.enabled()
                and not is_public(scope["method"], scope["path"])
                and not any(name == TOKEN_HEADER for name, _ in scope["headers"])):
            refused = JSONResponse(
                error_body("Unauthorized", "missing X-Auth-Token header"), status_code=401)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
