"""Choosing a store by URL: `sqlite:PATH` or `etcd://HOST:PORT[,HOST:PORT...][?prefix=/name]`.

A bad URL is refused with the part that is wrong named, before anything is opened.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qs

from tunnelnet.store.base import Store, StoreError

DEFAULT_ETCD_PREFIX = "/tunnelnet"
_ETCD_PORT = 2379  # IANA's etcd client port


class StoreUrlError(StoreError):
    """A store URL that cannot be used, with the reason."""


class Backend(StrEnum):
    SQLITE = "sqlite"
    ETCD = "etcd"


@dataclass(frozen=True, slots=True)
class StoreUrl:
    backend: Backend
    path: str = ""  # sqlite
    endpoints: tuple[str, ...] = ()  # etcd, HOST:PORT each
    prefix: str = DEFAULT_ETCD_PREFIX  # etcd

    def __str__(self) -> str:
        if self.backend is Backend.SQLITE:
            return f"sqlite:{self.path}"
        return f"etcd://{','.join(self.endpoints)}?prefix={self.prefix}"


def _endpoint(text: str, url: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port = text, str(_ETCD_PORT)
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise StoreUrlError(f"store URL {url!r}: {host!r} is not an IPv6 address") from None
    elif not host or any(c in host for c in "/[]@ ") or ":" in host:
        raise StoreUrlError(f"store URL {url!r}: bad etcd host {host!r}")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise StoreUrlError(f"store URL {url!r}: bad etcd port {port!r} in {text!r}")
    return f"{host}:{int(port)}"


def parse(url: str) -> StoreUrl:
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise StoreUrlError(f"store URL {url!r} has no scheme (sqlite:PATH or etcd://HOST:PORT)")
    try:
        backend = Backend(scheme.lower())
    except ValueError:
        known = ", ".join(b.value for b in Backend)
        raise StoreUrlError(f"store URL {url!r}: unknown scheme {scheme!r} ({known})") from None
    if backend is Backend.SQLITE:
        path = rest.removeprefix("//") if rest.startswith("///") else rest
        if not path:
            raise StoreUrlError(f"store URL {url!r}: no database path after sqlite:")
        return StoreUrl(backend, path=path)
    if not rest.startswith("//"):
        raise StoreUrlError(f"store URL {url!r}: etcd URLs are etcd://HOST:PORT[,HOST:PORT]")
    hosts, _, query = rest[2:].partition("?")
    hosts = hosts.rstrip("/")
    if not hosts:
        raise StoreUrlError(f"store URL {url!r}: no etcd endpoint")
    endpoints = tuple(_endpoint(item, url) for item in hosts.split(","))
    params = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = sorted(set(params) - {"prefix"})
    if unknown:
        raise StoreUrlError(f"store URL {url!r}: unknown parameter(s) {', '.join(unknown)}")
    prefix = params.get("prefix", [DEFAULT_ETCD_PREFIX])[-1]
    if not prefix.startswith("/") or prefix == "/" or "//" in prefix:
        raise StoreUrlError(f"store URL {url!r}: prefix {prefix!r} must be like /name")
    return StoreUrl(backend, endpoints=endpoints, prefix=prefix.rstrip("/"))


def open_store(url: str | StoreUrl) -> Store:
    """The store a URL names, opened (an etcd store checks that etcd answers)."""
    parsed = parse(url) if isinstance(url, str) else url
    if parsed.backend is Backend.SQLITE:
        from tunnelnet.store.sqlite import SqliteStore

        return SqliteStore(parsed.path)
    from tunnelnet.store.etcd import EtcdStore

    return EtcdStore(list(parsed.endpoints), parsed.prefix)
