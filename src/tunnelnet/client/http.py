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
    codec,
    error_for_status,
)
from tunnelnet.client import endpoints
from tunnelnet.client.endpoints import DEFAULT_URL

_TRUE = ("1", "true", "yes")
# the error_type of a request that reached a controller and broke before its answer (it may
# have been done); one that reached none keeps ClientError's "ConnectionError"
CONNECTION_LOST = "ConnectionLost"
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


# RFC 9110 9.2.2: the methods whose repetition has the effect of one request
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

class Client:
    """The controller's API over HTTP(S) or a unix socket, at one URL or a list of them.

    With several URLs (`https://a:9696,https://b:9696`), a request that cannot connect goes to
    the next controller at once; a request that was sent and then broke (the controller died
    mid-answer) is not repeated, since it may have been done, but the next request starts at
    the next controller. Whoever answered last is asked first next time.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        *,
        ca_file: str | None = None,
        insecure_http: bool | None = None,
    ) -> None:
        if insecure_http is None:
            insecure_http = os.environ.get("TUNNELNET_INSECURE_HTTP", "") in _TRUE
        text = url or os.environ.get("TUNNELNET_URL") or DEFAULT_URL
        self.endpoints = endpoints.parse_list(text, insecure_http)
        self.ca_file = ca_file if ca_file is not None else os.environ.get("TUNNELNET_CA") or None
        self.token = token if token is not None else os.environ.get("TUNNELNET_TOKEN", "")
        self._timeout = timeout
        self._transport = transport
        self._verify = (endpoints.tls_verify(self.ca_file)
                        if any(e.scheme == "https" for e in self.endpoints) else True)
        # made now, one per controller: a client shared by threads never races to make one
        self._clients = [self._connect(e) for e in self.endpoints]
        self._current = 0

    @property
    def url(self) -> str:
        """The controller asked first next time: the one that answered last."""
        return self.endpoints[self._current].url

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    def _connect(self, endpoint: endpoints.Endpoint) -> httpx.Client:
        transport = self._transport
        if endpoint.uds is not None and transport is None:
            # unix:PATH reaches a controller through its socket file (the lab's agents live
            # in other network namespaces but share the file system)
            transport = httpx.HTTPTransport(uds=endpoint.uds)
        headers = {"X-Auth-Token": self.token} if self.token else {}
        return httpx.Client(base_url=endpoint.base_url, headers=headers, timeout=self._timeout,
                            transport=transport, verify=self._verify)

    def _http(self, index: int) -> httpx.Client:
        return self._clients[index]

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
        for client in self._clients:
            client.close()

    # -- transport --------------------------------------------------------------------------

    def _order(self) -> list[int]:
        count = len(self.endpoints)
        return [(self._current + step) % count for step in range(count)]

    def _lost(self, index: int, exc: httpx.HTTPError) -> ClientError:
        """A request reached `index` and broke: not repeated (it may have been done), but the
        next request starts at the next controller."""
        endpoint = self.endpoints[index]
        self._current = (index + 1) % len(self.endpoints)
        return ClientError(f"lost the controller at {endpoint.url}: "
                           f"{endpoints.why(exc, endpoint, self.ca_file)}", 0, CONNECTION_LOST)

    def _unreachable(self, failures: builtins.list[str]) -> ClientError:
        self._current = (self._current + 1) % len(self.endpoints)
        return ClientError("cannot reach the controller at " + "; ".join(failures))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer of the first controller that takes the request, error answers included."""
        failures: builtins.list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            try:
                response = self._request_once_more_if_stale(index, method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # nothing was sent: the next controller may take it
                failures.append(f"{endpoint.url} ({endpoints.why(exc, endpoint, self.ca_file)})")
                continue
            except httpx.HTTPError as exc:
                raise self._lost(index, exc) from None
            self._current = index
            if response.status_code == 503:
                # this controller cannot reach its store: answer as it did, but ask the next
                # one first next time (another controller may be on the store's good side)
                self._current = (index + 1) % len(self.endpoints)
            return response
        raise self._unreachable(failures)

    def _request_once_more_if_stale(self, index: int, method: str, path: str,
                                    **kwargs: Any) -> httpx.Response:
        try:
            return self._http(index).request(method, path, **kwargs)
        except httpx.RemoteProtocolError as broken:
            # a pooled connection the server closed while idle fails before any answer; the
            # request was not taken, and one that means the same when repeated is sent again
            # on a fresh connection (a POST is not: it might have been taken after all)
            if method.upper() not in _IDEMPOTENT:
                raise
            try:
                return self._http(index).request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                raise broken from None  # not the connection but the controller is gone

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: QueryItems | None = None,
    ) -> httpx.Response:
        response = self._send(method, path, json=body, params=params or None)
        if response.status_code >= 400:
            raise _error(response)
        return response

    # -- generic resource calls ------------------------------------------------------------

    def list_with_revision(self, resource: str, **filters: Any) -> tuple[list[Resource], int]:
        """Resources and the revision they were read at (watch from it: no gap, no miss)."""
        plural = PLURALS[resource]
        response = self.request("GET", f"/v2.0/{plural}", params=_query(filters))
        items: list[Resource] = _decoded(response)[plural]
        return items, int(response.headers.get(REVISION_HEADER, "0"))

    def list(self, resource: str, **filters: Any) -> list[Resource]:
        return self.list_with_revision(resource, **filters)[0]

    def show(self, resource: str, resource_id: str) -> Resource:
        response = self.request("GET", f"/v2.0/{PLURALS[resource]}/{resource_id}")
        item: Resource = _decoded(response)[resource]
        return item

    def create(self, resource: str, **fields: Any) -> Resource:
        body = {resource: fields}  # None is sent as null (e.g. a subnet without gateway)
        response = self.request("POST", f"/v2.0/{PLURALS[resource]}", body)
        item: Resource = _decoded(response)[resource]
        return item

    def create_many(
        self, resource: str, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[Resource]:
        """Neutron's bulk create (networks, subnets, ports): one transaction, all or nothing."""
        plural = PLURALS[resource]
        response = self.request("POST", f"/v2.0/{plural}", {plural: [dict(i) for i in items]})
        created: builtins.list[Resource] = _decoded(response)[plural]
        return created

    def update(self, resource: str, resource_id: str, **fields: Any) -> Resource:
        body = {resource: fields}
        response = self.request("PUT", f"/v2.0/{PLURALS[resource]}/{resource_id}", body)
        item: Resource = _decoded(response)[resource]
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
        item: Resource = _decoded(response)["agent"]
        return item

    def tunnels(self, host: str | None = None, state: str | None = None
                ) -> builtins.list[Resource]:
        """``GET /v2.0/tunnels``: every agent's tunnels and their BFD state."""
        params = {k: v for k, v in (("host", host), ("state", state)) if v is not None}
        query = ("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""
        response = self.request("GET", f"/v2.0/tunnels{query}")
        found: builtins.list[Resource] = _decoded(response)["tunnels"]
        return found

    def set_port_status(self, port_id: str, status: str) -> Resource:
        return self.update("port", port_id, status=status)

    def set_port_statuses(self, statuses: Mapping[str, str]) -> dict[str, builtins.list[str]]:
        """Many ports' statuses in one request and one transaction (Neutron's
        update_device_list): port ids by outcome, `updated`, `unchanged`, `not_found`."""
        body = {"port_statuses": [{"id": p, "status": s} for p, s in statuses.items()]}
        response = self.request("PUT", "/v2.0/port_statuses", body)
        answer: dict[str, builtins.list[str]] = _decoded(response)
        return answer

    def l2population(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[builtins.list[Resource], int]:
        response = self.request(
            "GET", "/v2.0/l2population", params=_query({"network_id": network_id, "host": host})
        )
        items: builtins.list[Resource] = _decoded(response)["l2population"]
        return items, int(response.headers.get(REVISION_HEADER, "0"))

    def create_token(self, project: str | None = None, role: str = "project") -> Resource:
        """A new project (or agent) token; the secret is in `id` and is shown only now."""
        body: dict[str, Any] = {"token": {"role": role}}
        if project is not None:
            body["token"]["project"] = project
        item: Resource = _decoded(self.request("POST", "/v2.0/tokens", body))["token"]
        return item

    def snapshot(self, host: str | None = None) -> Snapshot:
        """Networks, subnets, ports and agents read in one transaction, with its revision.
        `host`: of the ports only that host's and those on the networks it has a port on."""
        response = self.request("GET", "/v2.0/snapshot", params=_query({"host": host}))
        return Snapshot.from_dict(_decoded(response)["snapshot"])

    def network_ports(self, network_id: str, since: int = 0) -> builtins.list[Resource]:
        """Every port of a network at a revision not older than `since` (what an agent whose
        watch names its host lists when it gets its first port on the network)."""
        response = self.request("GET", "/v2.0/watch/ports",
                                params=_query({"network_id": network_id, "since": since}))
        found: builtins.list[Resource] = _decoded(response)["ports"]
        return found

    def network_listing(self, network_id: str, since: int = 0
                        ) -> tuple[Resource | None, builtins.list[Resource]]:
        """A network's record (None: no such network) and every port of it at a revision not
        older than `since`: what an agent lists on its first port there."""
        response = self.request("GET", "/v2.0/watch/ports",
                                params=_query({"network_id": network_id, "since": since}))
        data = _decoded(response)
        return data.get("network"), data["ports"]

    def events(
        self, since: int, timeout: float = 30.0, host: str | None = None
    ) -> tuple[builtins.list[WatchEvent], int]:
        """Long poll: events after `since` as soon as there is one (or none after `timeout`),
        and the revision to ask from next. Raises ResyncRequired when `since` is too old.
        `host`: only the events that concern that host (the l2 population fanout)."""
        # the answer may come as late as any other answer may (the client's timeout), after
        # the wait the poll asked for: a slow controller's poll is answered, not abandoned
        limits = httpx.Timeout(10.0, read=timeout + self._timeout)
        params = _query({"since": since, "timeout": timeout, "host": host})
        response = self._send("GET", "/v2.0/events", params=params, timeout=limits)
        if response.status_code >= 400:
            raise _error(response)
        data = _decoded(response)
        found = [WatchEvent.from_dict(e) for e in data["events"]]
        return found, int(data["revision"])

    def watch(
        self, since: int | None = None, timeout: float | None = None, read_timeout: float = 60.0,
        host: str | None = None,
    ) -> Iterator[WatchEvent]:
        """Events after `since` as they happen; ends after `timeout` seconds, on `resync`,
        or when the connection drops (ClientError). Resume with the last revision seen.
        `host`: only the port events that concern that host (the l2 population fanout)."""
        params = _query({"since": since, "timeout": timeout, "host": host})
        limits = httpx.Timeout(10.0, read=read_timeout)
        failures: builtins.list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            opened = False
            try:
                with self._http(index).stream("GET", "/v2.0/watch", params=params,
                                              timeout=limits) as resp:
                    opened = True
                    self._current = index
                    if resp.status_code >= 400:
                        resp.read()
                        raise _error(resp)
                    for line in resp.iter_lines():
                        if line:
                            yield WatchEvent.decode(line)
                return
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if opened:
                    raise self._lost(index, exc) from None
                failures.append(f"{endpoint.url} ({endpoints.why(exc, endpoint, self.ca_file)})")
            except httpx.HTTPError as exc:
                if not opened:
                    raise self._lost(index, exc) from None
                self._current = (index + 1) % len(self.endpoints)
                raise ClientError(f"watch stream from {endpoint.url} broke: "
                                  f"{endpoints.why(exc, endpoint, self.ca_file)}", 0,
                                  CONNECTION_LOST) from None
        raise self._unreachable(failures)


def _decoded(response: httpx.Response) -> Any:
    """The answer's JSON, decoded by orjson (`Response.json` is the standard library's, a
    quarter of a busy agent's CPU); not JSON: json.JSONDecodeError, as `Response.json`."""
    return codec.loads(response.content)


def _error(response: httpx.Response) -> ClientError:
    try:
        body = _decoded(response)
        # Neutron's shape; `error` is what controllers before it answered
        error = body["NeutronError"] if "NeutronError" in body else body["error"]
        error_type, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error_type, message = "HTTPError", response.text[:200] or response.reason_phrase
    return error_for_status(message, response.status_code, error_type)
