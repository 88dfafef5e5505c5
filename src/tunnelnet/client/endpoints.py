"""Where a client finds its controllers, and how it trusts them.

A client is given one controller URL or several separated by commas
(`https://a:9696,https://b:9696`, also in `TUNNELNET_URL`): several controllers on one store
serve the same API, so a request that cannot reach one may go to the next. Each URL is
`https://HOST:PORT` (verified against `ca_file`, or the system's CAs without one),
`http://HOST:PORT` or `unix:PATH`.

Plain `http://` is refused for any host but loopback unless asked for (`insecure_http`): the
rule of `api.transport`, which the controller applies to what it serves.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tunnelnet.api import ClientError
from tunnelnet.api.transport import is_loopback

DEFAULT_URL = "http://127.0.0.1:9696"
SCHEMES = ("http", "https", "unix")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One controller URL as the client uses it."""

    url: str  # as given, without a trailing slash
    scheme: str
    host: str  # empty for unix:PATH

    @property
    def uds(self) -> str | None:
        """The socket file of a unix:PATH URL."""
        return self.url.removeprefix("unix:") if self.scheme == "unix" else None

    @property
    def base_url(self) -> str:
        # httpx needs some http URL for a unix socket; the host part is never looked up
        return "http://controller" if self.scheme == "unix" else self.url


def parse_one(text: str, insecure_http: bool) -> Endpoint:
    url = text.strip().rstrip("/")
    if url.startswith("unix:"):
        if not url.removeprefix("unix:"):
            raise ClientError(f"controller URL {text!r}: unix: needs a socket path")
        return Endpoint(url, "unix", "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"controller URL {text!r} is not https://HOST:PORT, "
                          "http://HOST:PORT or unix:PATH")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ClientError(f"controller URL {text!r}: {exc}") from None
    if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        raise ClientError(
            f"controller URL {url} is plain HTTP to another host: the token would cross the "
            "network in clear. Use https:// (with --ca-file / TUNNELNET_CA), or accept the "
            "risk with --insecure-http (TUNNELNET_INSECURE_HTTP=1)")
    return Endpoint(url, parts.scheme, parts.hostname)


def parse_list(text: str, insecure_http: bool = False) -> list[Endpoint]:
    """The controllers of a comma-separated list, in the order given (tried in that order)."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ClientError("no controller URL given")
    endpoints = [parse_one(item, insecure_http) for item in items]
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.url in seen:
            raise ClientError(f"controller URL {endpoint.url} is listed twice")
        seen.add(endpoint.url)
    return endpoints


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies an https controller with: the operator's CA, or the system's."""
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise ClientError(f"CA file {ca_file} (--ca-file / TUNNELNET_CA) does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"CA file {ca_file} (--ca-file / TUNNELNET_CA) cannot be used as "
                          f"a CA certificate: {exc}") from None


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` among `exc` and what caused it (httpx wraps ssl's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def why(exc: httpx.HTTPError, endpoint: Endpoint, ca_file: str | None) -> str:
    """One clause saying why `endpoint` failed, with what to check when it is about trust."""
    verify = _cause(exc, ssl.SSLCertVerificationError)
    trusted = f"the CA in {ca_file}" if ca_file else "the system's CAs (no --ca-file given)"
    if isinstance(verify, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is not trusted ({verify.verify_message}): it must be "
                f"signed by {trusted} and name the host or address in the URL")
    tls = _cause(exc, ssl.SSLError)
    if tls is not None:
        reason = getattr(tls, "reason", None) or str(tls)
        return f"the TLS handshake failed ({reason}): is it serving HTTPS on that port?"
    text = str(exc) or type(exc).__name__
    if endpoint.scheme == "http" and isinstance(exc, httpx.RemoteProtocolError):
        return f"{text} (a controller serving HTTPS drops plain HTTP: use an https:// URL)"
    return text


def describe(endpoints: Sequence[Endpoint]) -> str:
    return ",".join(e.url for e in endpoints)
