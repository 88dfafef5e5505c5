"""The client's interface served in-process, without HTTP, for tests only.

For tests of code that takes a client: `LocalClient` has the methods of
`tunnelnet.client.http.Client`, returns the same shapes and raises the same ClientError
subclasses with the same status and type (the API contract's `error_for_status`), so callers
cannot tell the difference except by speed. Each LocalClient acts with one caller's rights
(admin, agent or a project). It joins client and server, which is why it lives here and not
in the package: there, client and server import only the contract (`tunnelnet.api`).
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tunnelnet.api import Resource, ResyncRequired, Snapshot, WatchEvent, error_for_status
from tunnelnet.client.http import agent_configurations, query_text
from tunnelnet.server import agents, l2pop, networks, ports, projects, subnets, watch
from tunnelnet.server.auth import Caller, new_token
from tunnelnet.server.controller import (
    Controller,
    create_many,
    list_resource,
    list_visible,
    public,
    show_resource,
)
from tunnelnet.server.errors import ApiError

_MODULES: dict[str, Any] = {
    "network": networks,
    "subnet": subnets,
    "port": ports,
    "project": projects,
    "agent": agents,
}


@contextmanager
def _as_client_errors() -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        raise error_for_status(exc.message, exc.status, exc.error_type) from None


class LocalClient:
    def __init__(self, ctl: Controller, caller: Caller) -> None:
        self.ctl = ctl
        self.caller = caller
        self.url = "local:"
        self._changed = threading.Condition()
        self._unsubscribe = ctl.store.subscribe(self._on_commit)

    def _on_commit(self, _revision: int) -> None:
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        self._unsubscribe()

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _view(self, resource: str) -> Any:
        if resource == "agent":
            return lambda doc: agents.view(self.ctl, doc)
        return public

    def list_with_revision(self, resource: str, **filters: Any) -> tuple[list[Resource], int]:
        with _as_client_errors():
            if resource == "agent":
                self.caller.require_admin_or_agent("listing agents")
            return list_resource(
                self.ctl, self.caller, resource, query_text(filters),
                _MODULES[resource].FIELDS, self._view(resource),
            )  # fmt: skip

    def list(self, resource: str, **filters: Any) -> builtins.list[Resource]:
        return self.list_with_revision(resource, **filters)[0]

    def show(self, resource: str, resource_id: str) -> Resource:
        with _as_client_errors():
            if resource == "agent":
                self.caller.require_admin_or_agent("showing an agent")
            return show_resource(
                self.ctl, self.caller, resource, resource_id, [], self._view(resource)
            )

    def create(self, resource: str, **fields: Any) -> Resource:
        with _as_client_errors():
            if resource == "agent":
                return agents.register(self.ctl, self.caller, fields)[0]
            doc: Resource = _MODULES[resource].create(self.ctl, self.caller, fields)
            return public(doc)

    def create_many(
        self, resource: str, items: Sequence[Mapping[str, Any]]
    ) -> builtins.list[Resource]:
        with _as_client_errors():
            docs = create_many(self.ctl, self.caller, _MODULES[resource].create,
                               [dict(i) for i in items], f"{resource}s")  # fmt: skip
        return [public(d) for d in docs]

    def update(self, resource: str, resource_id: str, **fields: Any) -> Resource:
        with _as_client_errors():
            doc: Resource = _MODULES[resource].update(self.ctl, self.caller, resource_id, fields)
            return public(doc)

    def delete(self, resource: str, resource_id: str) -> None:
        with _as_client_errors():
            _MODULES[resource].delete(self.ctl, self.caller, resource_id)

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

    def heartbeat(self, agent_id: str, configurations: Mapping[str, Any] | None = None) -> Resource:
        body = {} if configurations is None else {"configurations": dict(configurations)}
        with _as_client_errors():
            return agents.heartbeat(self.ctl, self.caller, agent_id, body)

    def set_port_status(self, port_id: str, status: str) -> Resource:
        return self.update("port", port_id, status=status)

    def l2population(
        self, network_id: str | None = None, host: str | None = None
    ) -> tuple[builtins.list[Resource], int]:
        with _as_client_errors():
            return l2pop.l2population(self.ctl, self.caller, network_id, host)

    def create_token(self, project: str | None = None, role: str = "project") -> Resource:
        body: dict[str, Any] = {"role": role}
        if project is not None:
            body["project"] = project
        with _as_client_errors():
            return projects.create_token(self.ctl, self.caller, body, new_token())

    def snapshot(self, host: str | None = None) -> Snapshot:
        """`host` is taken and ignored: every port is a superset of what it asks for."""
        kinds = ("network", "subnet", "port", "agent") if self.caller.sees_all else (
            "network", "subnet", "port")  # fmt: skip
        with self.ctl.store.read() as txn:
            found = {
                kind: [self._view(kind)(d) for d in list_visible(txn, self.caller, kind)]
                for kind in kinds
            }
            revision = txn.revision
        return Snapshot(found["network"], found["subnet"], found["port"],
                        found.get("agent", []), revision)  # fmt: skip

    def network_ports(self, network_id: str, since: int = 0) -> builtins.list[Resource]:
        return self.list("port", network_id=network_id)

    def network_listing(self, network_id: str, since: int = 0
                        ) -> tuple[Resource | None, builtins.list[Resource]]:
        with self.ctl.store.read() as txn:
            network = txn.get("network", network_id)
        return (None if network is None else public(network)), self.network_ports(network_id)

    def events(
        self, since: int, timeout: float = 30.0, host: str | None = None
    ) -> tuple[builtins.list[WatchEvent], int]:
        """Long poll, as the HTTP one: returns at the first visible event or at `timeout`.
        `host` is taken and ignored, as by a controller that sends every event (a superset)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                result = watch.changes_after(self.ctl, self.caller, since)
                if result is None:
                    raise ResyncRequired(
                        f"changes after revision {since} are no longer kept",
                        ResyncRequired.STATUS, ResyncRequired.TYPE,
                    )  # fmt: skip
                found, since = result
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found, since
                # a commit between the read above and this wait notifies under the lock
                self._changed.wait(remaining)
