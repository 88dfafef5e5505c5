"""In-memory stand-ins for a controller and a switch, for the agent's unit tests only.

The switch fake keeps flows by (table, priority, match) the way add-flow replaces and strict
del-flows removes them; the netns tests drive the real vswitchd and Open vSwitch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tunnelnet.agent.backend import BackendError, SwitchPort
from tunnelnet.agent.controller import Event, Snapshot
from tunnelnet.api import NotFoundError


class FakeController:
    def __init__(self) -> None:
        self.networks: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []
        self.revision = 0
        self.statuses: dict[str, str] = {}
        self.status_reports: list[dict[str, str]] = []  # each bulk report, as sent
        self.down = False
        self.snapshots = 0  # how many times the agent listed everything
        self.tunnel_reports: list[list[dict[str, Any]]] = []  # heartbeats' tunnel states
        self.watch_errors: list[Exception] = []  # raised by the next watches, one each
        self.network_listings: list[str] = []  # networks whose ports the agent listed

    def forget_events(self) -> None:
        """Drop the change log, as compaction does: only a new snapshot shows what changed."""
        self.events.clear()

    def _check(self) -> None:
        if self.down:
            raise BackendError("controller down")

    def change(self, resource: str, action: str, obj: dict[str, Any]) -> None:
        self.revision += 1
        store = {"network": self.networks, "port": self.ports, "agent": self.agents}[resource]
        key = obj["host"] if resource == "agent" else obj["id"]
        if action == "delete":
            store.pop(key, None)
        else:
            store[key] = obj
        self.events.append(Event(resource, action, obj, self.revision))

    def register_agent(self, host: str, tunnel_ip: str, tunnel_types: Sequence[str],
                       bridge_mappings: Mapping[str, str]) -> None:
        self._check()
        self.change("agent", "create", {"host": host, "tunnel_ip": tunnel_ip,
                                        "tunnel_types": list(tunnel_types), "alive": True})

    def heartbeat(self, host: str, tunnels: Sequence[Mapping[str, Any]] | None = None
                  ) -> None:
        self._check()
        if tunnels is not None:
            self.tunnel_reports.append([dict(t) for t in tunnels])

    def snapshot(self) -> Snapshot:
        self._check()
        self.snapshots += 1
        return Snapshot(list(self.networks.values()), list(self.ports.values()),
                        list(self.agents.values()), self.revision)

    def watch(self, since: int, timeout: float) -> list[Event]:
        self._check()
        if self.watch_errors:
            raise self.watch_errors.pop(0)
        return [e for e in self.events if e.revision > since]

    def set_port_status(self, port_id: str, status: str) -> None:
        self._check()
        if port_id not in self.ports:  # as the controller answers for a deleted port
            raise NotFoundError(f"Port {port_id} could not be found.", status=404)
        self.statuses[port_id] = status

    def set_port_statuses(self, statuses: Mapping[str, str]) -> set[str]:
        self._check()
        self.status_reports.append(dict(statuses))
        missing = {p for p in statuses if p not in self.ports}
        self.statuses.update((p, s) for p, s in statuses.items() if p not in missing)
        return missing

    def list_network(self, network_id: str, since: int
                     ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        self._check()
        self.network_listings.append(network_id)
        return self.networks.get(network_id), [
            p for p in self.ports.values() if p["network_id"] == network_id]


_WHERE = re.compile(r"^(?:cookie=(0x[0-9a-f]+),)?table=(\d+),priority=(\d+),?(.*?) actions=(.*)$")


class FakeSwitch:
    def __init__(self) -> None:
        self.bridges: dict[str, dict[str, SwitchPort]] = {}
        self.flows: dict[str, dict[tuple[int, int, str], tuple[int, str]]] = {}
        self.fail_secure: dict[str, bool] = {}

    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None:
        self.bridges.setdefault(bridge, {})
        self.flows.setdefault(bridge, {})
        self.fail_secure[bridge] = fail_secure

    def plug(self, bridge: str, name: str, iface_id: str | None) -> int:
        ofport = max((p.ofport for p in self.bridges[bridge].values()), default=0) + 1
        ids = {"iface-id": iface_id} if iface_id else {}
        self.bridges[bridge][name] = SwitchPort(name, ofport, external_ids=ids)
        return ofport

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return list(self.bridges[bridge].values())

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int:
        if name in self.bridges[bridge]:
            return self.bridges[bridge][name].ofport
        ofport = max((p.ofport for p in self.bridges[bridge].values()), default=0) + 1
        self.bridges[bridge][name] = SwitchPort(name, ofport, type, options=dict(options or {}))
        return ofport

    def del_port(self, bridge: str, name: str) -> None:
        self.bridges[bridge].pop(name, None)

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        port = self.bridges[bridge][name]
        self.bridges[bridge][name] = SwitchPort(port.name, port.ofport, port.type, tag,
                                                port.options, port.external_ids)

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None:
        for text in flows:
            found = _WHERE.match(text)
            if not found:
                raise BackendError(f"fake switch cannot read {text!r}")
            cookie, table, prio, match, actions = found.groups()
            self.flows[bridge][(int(table), int(prio), match)] = (int(cookie or "0", 16),
                                                                  actions)

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        cookie = re.fullmatch(r"cookie=(0x[0-9a-f]+)/-1", match)
        if cookie:
            value = int(cookie.group(1), 16)
            self.flows[bridge] = {k: v for k, v in self.flows[bridge].items() if v[0] != value}
            return
        towards = re.fullmatch(r"table=(\d+),out_port=(\d+)", match)
        if towards and not strict:  # ovs-ofctl's out_port: flows with that output action
            table, port = int(towards.group(1)), towards.group(2)
            self.flows[bridge] = {
                k: v for k, v in self.flows[bridge].items()
                if k[0] != table or f"output:{port}" not in v[1].split(",")}
            return
        found = re.fullmatch(r"table=(\d+),priority=(\d+),?(.*)", match)
        if not (strict and found):
            raise BackendError(f"fake switch cannot delete by {match!r}")
        self.flows[bridge].pop((int(found.group(1)), int(found.group(2)), found.group(3)), None)

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        port = self.bridges[bridge][name]
        self.bridges[bridge][name] = dataclasses.replace(
            port, bfd=dict(column), bfd_status=dict(port.bfd_status) if column else {})

    def set_bfd_status(self, bridge: str, name: str, **status: str) -> None:
        """What the switch's BFD session would report (the test plays the session)."""
        port = self.bridges[bridge][name]
        self.bridges[bridge][name] = dataclasses.replace(port, bfd_status=status)

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        return [f"cookie={c:#x}, table={t}, priority={p},{m} actions={a}"
                for (t, p, m), (c, a) in self.flows[bridge].items()
                if table is None or t == table]

    def texts(self, bridge: str) -> set[str]:
        return {f"table={t},priority={p}{',' + m if m else ''} actions={a}"
                for (t, p, m), (_c, a) in self.flows[bridge].items()}
