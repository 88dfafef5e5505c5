"""A switch kept as plain records, for the control-plane benchmark's simulated hypervisors.

The benchmark measures the controllers, the store and the agents' work between them; a real
flow table per hypervisor (the simulation's :class:`tunnelnet.switch.Bridge`) would spend the
worker's CPU parsing flows that nothing forwards through. This keeps what the agent asks and
reads back (bridges, ports with their tags and external_ids, flows by table, priority and
match, each with its cookie) and answers in the vswitchd control socket's formats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tunnelnet.agent.backend import BackendError, SwitchPort

# an agent's add text: [cookie=C,]table=T,priority=P[,MATCH] actions=A (FlowMod.add_text)
_ADD = re.compile(r"^(?:cookie=(0x[0-9a-f]+),)?table=(\d+),priority=(\d+),?(.*?) actions=(.*)$")
_TOWARDS = re.compile(r"table=(\d+),out_port=(\d+)")
_STRICT = re.compile(r"^table=(\d+),priority=(\d+),?(.*)$")
_BY_COOKIE = re.compile(r"^cookie=(0x[0-9a-f]+)/-1$")

FlowKey = tuple[int, int, str]


class MemorySwitch:
    """One hypervisor's bridges; implements the agent's SwitchBackend."""

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, SwitchPort]] = {}  # bridge -> name -> port
        self.flows: dict[str, dict[FlowKey, tuple[int, str]]] = {}  # -> (cookie, actions)
        self._next_ofport = 1

    def _bridge(self, bridge: str) -> dict[str, SwitchPort]:
        found = self.ports.get(bridge)
        if found is None:
            raise BackendError(f"no bridge named {bridge!r}")
        return found

    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None:
        self.ports.setdefault(bridge, {})
        self.flows.setdefault(bridge, {})

    def plug(self, bridge: str, name: str, tag: int, external_ids: Mapping[str, str]) -> None:
        """A vNIC as Nova plugs it (os-vif: on the dead VLAN, with iface-id and MAC)."""
        self.ensure_bridge(bridge, fail_secure=True)
        self._bridge(bridge)[name] = SwitchPort(name, self._ofport(), "system", tag,
                                                external_ids=dict(external_ids))

    def _ofport(self) -> int:
        self._next_ofport += 1
        return self._next_ofport - 1

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return list(self._bridge(bridge).values())

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int:
        ports = self._bridge(bridge)
        if name not in ports:
            ports[name] = SwitchPort(name, self._ofport(), type, options=dict(options or {}))
        return ports[name].ofport

    def del_port(self, bridge: str, name: str) -> None:
        self._bridge(bridge).pop(name, None)

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        ports = self._bridge(bridge)
        if name not in ports:
            raise BackendError(f"no port {name!r} on bridge {bridge!r}")
        ports[name] = replace(ports[name], tag=tag)

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        """Kept on the port; nothing answers BFD here, so no bfd_status ever says down
        (the simulation's switch does the same)."""
        ports = self._bridge(bridge)
        if name not in ports:
            raise BackendError(f"no port {name!r} on bridge {bridge!r}")
        ports[name] = replace(ports[name], bfd=dict(column))

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None:
        self._bridge(bridge)
        table = self.flows[bridge]
        for text in flows:
            found = _ADD.match(text)
            if found is None:
                raise BackendError(f"{bridge}: cannot read flow {text!r}")
            cookie, tid, prio, match, actions = found.groups()
            table[(int(tid), int(prio), match)] = (int(cookie or "0", 16), actions)

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        self._bridge(bridge)
        by_cookie = _BY_COOKIE.match(match)
        if by_cookie is not None:
            value = int(by_cookie.group(1), 16)
            self.flows[bridge] = {k: v for k, v in self.flows[bridge].items() if v[0] != value}
            return
        towards = _TOWARDS.fullmatch(match)
        if towards is not None and not strict:  # a removed tunnel's learned entries
            table, output = int(towards.group(1)), f"output:{towards.group(2)}"
            self.flows[bridge] = {k: v for k, v in self.flows[bridge].items()
                                  if k[0] != table or output not in v[1].split(",")}
            return
        found = _STRICT.match(match)
        if not strict or found is None:
            raise BackendError(f"{bridge}: only strict or by-cookie deletes, not {match!r}")
        self.flows[bridge].pop((int(found.group(1)), int(found.group(2)), found.group(3)), None)

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        self._bridge(bridge)
        return [f"cookie={c:#x}, table={t}, priority={p}{',' + m if m else ''} actions={a}"
                for (t, p, m), (c, a) in self.flows[bridge].items()
                if table is None or t == table]

    def flow_count(self) -> int:
        return sum(len(flows) for flows in self.flows.values())
