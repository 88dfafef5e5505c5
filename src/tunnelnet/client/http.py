"""A small typed client of the controller's REST API (used by the CLI, the agent and the lab).

Resources come back as the API's JSON objects (dicts with Neutron's field names). Every failure
is a ClientError subclass carrying the API's error type and message, so callers can act on
`error_type` (`IpAddressGenerationFailure`, ...) and the CLI prints one line. The records and
errors are the API contract's (`tunnelnet.api`), shared with the controller.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from tunnelnet.api import (
    REVISION_HEADER,
    ClientError,
    Resource,
    Snapshot,
    WatchEvent,
    error_for_status,
)

DEFAULT_URL = "http://127.0.0.1:9696"
PLURALS = {
    "network": "networks",
    "subnet": "subnets",
    "port": "ports",
    "agent": "agents",
    "project": "projects",
}


QueryItems = list[tuple[str, str | int | float | bool | None]]


def _query(filters: Mapping[str, Any]) -> QueryItems:
    out: QueryItems = []
    for key, value in filters.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, bool):
                out.append((key, "true" if item else "false"))
            elif item is not None:
                out.append((key, str(item)))
    return out


def agent_configurations(
    tunneling_ip: str | None,
    tunnel_types: Sequence[str],
    bridge_mappings: Mapping[str, str] | None,
    l2_population: bool,
    arp_responder_enabled: bool,
) -> dict[str, Any]:
    """An agent's report, under the keys Neutron's Open vSwitch agent uses."""
    conf: dict[str, Any] = {
        "tunnel_types": list(tunnel_types),
        "bridge_mappings": dict(bridge_mappings or {}),
        "l2_population": l2_population,
        "arp_responder_enabled": arp_responder_enabled,
    }
    if tunneling_ip is not None:
        conf["tunneling_ip"] = tunneling_ip
    return conf


def query_text(filters: Mapping[str, Any]) -> dict[str, list[str]]:
    """Filters as the server reads them from a query string."""
    out: dict[str, list[str]] = {}
    for key, value in _query(filters):
        out.setdefault(key, []).append(str(value))
    return out


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("TUNNELNET_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("TUNNELNET_TOKEN", "")
        headers = {"X-Auth-Token": self.token} if self.token else {}
        base_url = self.url
        if self.url.startswith("unix:") and transport is None:
            # unix:PATH reaches a controller through its socket file (the lab's agents live
            # in other network namespaces but share the file system)
            transport = httpx.HTTPTransport(uds=self.url.removeprefix("unix:"))
            base_url = "http://controller"
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: QueryItems | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the controller at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    # -- generic resource calls ------------------------------------------------------------

    def list_with_revision(self, resource: str, **filters: Any) -> tuple[list[Resource], int]:
        """Resources and the revision they were read at (watch from it: no gap, no miss)."""
        plural = PLURALS[resource]
        response = self.request("GET", f"/v2.0/{plural}", params=_query(filters))
        items: list[Resource] = response.json()[plural]
        return items, int(response.headers.get(REVISION_HEADER, "0"))

    def list(self, resource: str, **filters: Any) -> list[Resource]:
        return self.list_with_revision(resource, **filters)[0]

    def show(self, resource: str, resource_id: str) -> Resource:
        response = self.request("GET", f"/v2.0/{PLURALS[resource]}/{resource_id}")
        item: Resource = response.json()[resource]
        return item

    def create(self, resource: str, **fields: Any) -> Resource:
        body = {resource: fields}  # None is sent as null (e.g. a subnet without gateway)
        response = self.request("POST", f"/v2.0/{PLURALS[resource]}", body)
        item: Resource = response.json()[resource]
        return item

    def create_many(
        self, resource: str, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[Resource]:
        """Neutron's bulk create (networks, subnets, ports): one transaction, all or nothing."""
        plural = PLURALS[resource]
        response = self.request("POST", f"/v2.0/{plural}", {plural: [dict(i) for i in items]})
        created: builtins.list[Resource] = response.json()[plural]
        return created

    def update(self, resource: str, resource_id: str, **fields: Any) -> Resource:
        body = {resource: fields}
        response = self.request("PUT", f"/v2.0/{PLURALS[resource]}/{resource_id}", body)
        item: Resource = response.json()[resource]
        return item

    def delete(self, resource: str, resource_id: str) -> None:
        self.request("DELETE", f"/v2.0/{PLURALS[resource]}/{resource_id}")

    # -- what agents and the lab need ---------------------------------------------------------

    def register_agent(
        self,
        host: str,
        tunneling_ip: str | None = None,
        tunnel_types: Sequence[str] = ("vxlan",),
        bridge_mappings: Mapping[str, str] | None = None,
        l2_population: bool = False,
        arp_responder_enabled: bool = False,
        agent_type: str = "Open vSwitch agent",
    ) -> Resource:
        conf = agent_configurations(
            tunneling_ip, tunnel_types, bridge_mappings, l2_population, arp_responder_enabled
        )
        return self.create("agent", host=host, agent_type=agent_type, configurations=conf)

    def heartbeat(self, agent_id: str, configurations: Mapping[str, Any] | None = None,
                  tunnels: Sequence[Mapping[str, Any]] | None = None) -> Resource:
        """``tunnels``: the agent's tunnels with their BFD state (replacing the last report)."""
        agent: dict[str, Any] = {}
        if configurations is not None:
            agent["configurations"] = configurations
        if tunnels is not None:
            agent["tunnels"] = [dict(t) for t in tunnels]
        body = {"agent": agent}
        response = self.request("POST", f"/v2.0/agents/{agent_id}/heartbeat", body)
        item: Resource = response.json()["agent"]
        return item

    def tunnels(self, host: str | None = None, state: str | None = None
                ) -> builtins.list[Resource]:
        """``GET /v2.0/tunnels``: every agent's tunnels and their BFD state."""
        params = {k: v for k, v in (("host", host), ("state", state)) if v is not None}
        query = ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""
        response = self.request("GET", f"/v2.0/tunnels{query}")
        found: builtins.list[Resource] = response.json()["tunnels"]
        return found

    def set_port_status(self, port_id: str, status: str) -> Resource:
        return self.update("port", port_id, status=status)

    def l2population(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[builtins.list[Resource], int]:
        response = self.request(
            "GET", "/v2.0/l2population", params=_query({"network_id": network_id, "host": host})
        )
        items: builtins.list[Resource] = response.json()["l2population"]
        return items, int(response.headers.get(REVISION_HEADER, "0"))

    def create_token(self, project: str | None = None, role: str = "project") -> Resource:
        """A new project (or agent) token; the secret is in `id` and is shown only now."""
        body: dict[str, Any] = {"token": {"role": role}}
        if project is not None:
            body["token"]["project"] = project
        item: Resource = self.request("POST", "/v2.0/tokens", body).json()["token"]
        return item

    def snapshot(self) -> Snapshot:
        """Networks, subnets, ports and agents read in one transaction, with its revision."""
        return Snapshot.from_dict(self.request("GET", "/v2.0/snapshot").json()["snapshot"])

    def events(self, since: int, timeout: float = 30.0) -> tuple[builtins.list[WatchEvent], int]:
        """Long poll: events after `since` as soon as there is one (or none after `timeout`),
        and the revision to ask from next. Raises ResyncRequired when `since` is too old."""
        limits = httpx.Timeout(10.0, read=timeout + 10.0)
        params = _query({"since": since, "timeout": timeout})
        try:
            response = self._http.get("/v2.0/events", params=params, timeout=limits)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the controller at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        data = response.json()
        found = [WatchEvent.from_dict(e) for e in data["events"]]
        return found, int(data["revision"])

    def watch(
        self, since: int | None = None, timeout: float | None = None, read_timeout: float = 60.0
    ) -> Iterator[WatchEvent]:
        """Events after `since` as they happen; ends after `timeout` seconds, on `resync`,
        or when the connection drops (ClientError). Resume with the last revision seen."""
        params = _query({"since": since, "timeout": timeout})
        limits = httpx.Timeout(10.0, read=read_timeout)
        try:
            with self._http.stream("GET", "/v2.0/watch", params=params, timeout=limits) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error(resp)
                for line in resp.iter_lines():
                    if line:
                        yield WatchEvent.decode(line)
        except httpx.HTTPError as exc:
            raise ClientError(f"watch stream from {self.url} broke: {exc}") from None


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
        # Neutron's shape; `error` is what controllers before it answered
        error = body["NeutronError"] if "NeutronError" in body else body["error"]
        error_type, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error_type, message = "HTTPError", response.text[:200] or response.reason_phrase
    return error_for_status(message, response.status_code, error_type)
