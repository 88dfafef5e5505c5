"""One hypervisor's switch in the simulation: real tunnelnet bridges, ports as records.

The bridges are :class:`tunnelnet.switch.Bridge` objects, exactly what a vswitchd runs; only
the I/O is missing. Ports are kept the way vswitchd keeps them (a global name per switch,
type, options, external_ids), so the agent sees the same answers it gets over the control
socket, and the trace's walker (:mod:`tunnelnet.trace.journey`) can follow patch and tunnel
ports.
:class:`SimBackend` is the agent's :class:`~tunnelnet.agent.backend.SwitchBackend` over it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tunnelnet.agent.backend import BackendError, SwitchPort
from tunnelnet.packet import tunnel_kinds
from tunnelnet.switch import Bridge, SwitchError

TUNNEL_TYPES = tunnel_kinds.names()
PORT_TYPES = ("system", "internal", "patch", *TUNNEL_TYPES)


@dataclass
class SimPort:
    name: str
    bridge: str
    ofport: int
    type: str = "system"
    options: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)


class SimSwitch:
    """The bridges and ports of one hypervisor; counts every change it is asked to make."""

    def __init__(self, hypervisor: str, tunnel_ip: str) -> None:
        self.hypervisor = hypervisor
        self.tunnel_ip = tunnel_ip
        self.bridges: dict[str, Bridge] = {}
        self.ports: dict[str, SimPort] = {}  # names are global per switch, as in vswitchd
        # (kind, remote_ip) -> port, as the datapath demultiplexes key=flow tunnels
        self.tunnels: dict[tuple[str, str], SimPort] = {}
        self.changes = 0  # requests that changed something (the sim's "still converging")

    def bridge(self, name: str) -> Bridge:
        found = self.bridges.get(name)
        if found is None:
            raise BackendError(f"{self.hypervisor}: no bridge named {name!r}")
        return found

    def port_at(self, bridge: str, ofport: int) -> SimPort | None:
        cfg = self.bridge(bridge).port_by_number.get(ofport)
        return self.ports.get(cfg.name) if cfg is not None else None

    def ensure_bridge(self, name: str, *, fail_secure: bool) -> None:
        if name in self.bridges:
            return
        if name in self.ports:
            raise BackendError(f"{self.hypervisor}: {name!r} is already a port")
        self.bridges[name] = Bridge(name, fail_mode="secure" if fail_secure else "standalone")
        self.changes += 1

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None,
                 external_ids: Mapping[str, str] | None = None, tag: int | None = None) -> int:
        br = self.bridge(bridge)
        existing = self.ports.get(name)
        if existing is not None:
            if existing.bridge != bridge:
                raise BackendError(f"{self.hypervisor}: port {name!r} is on bridge "
                                   f"{existing.bridge!r}, not {bridge!r}")
            return existing.ofport
        if type not in PORT_TYPES:
            raise BackendError(f"{self.hypervisor}: port {name!r}: type {type!r} is not one of "
                               f"{', '.join(PORT_TYPES)}")
        opts = dict(options or {})
        demux: tuple[str, str] | None = None
        if type in TUNNEL_TYPES:
            remote = opts.get("remote_ip")
            if not remote:
                raise BackendError(f"{self.hypervisor}: tunnel port {name!r} needs "
                                   "options:remote_ip")
            demux = (type, remote)
            if demux in self.tunnels:
                raise BackendError(f"{self.hypervisor}: port {name!r}: {type} from {remote} "
                                   f"is already port {self.tunnels[demux].name!r}")
        if type == "patch" and not opts.get("peer"):
            raise BackendError(f"{self.hypervisor}: patch port {name!r} needs options:peer")
        try:
            ofport = br.add_port(name, tag=tag)
        except SwitchError as exc:
            raise BackendError(f"{self.hypervisor}: {exc}") from exc
        port = SimPort(name, bridge, ofport, type, opts, dict(external_ids or {}))
        self.ports[name] = port
        if demux is not None:
            self.tunnels[demux] = port
        self.changes += 1
        return ofport

    def del_port(self, bridge: str, name: str) -> None:
        port = self.ports.get(name)
        if port is None or port.bridge != bridge:
            return  # --if-exists, as the agent asks
        self.bridge(bridge).del_port(name)
        del self.ports[name]
        if port.type in TUNNEL_TYPES:
            self.tunnels.pop((port.type, port.options["remote_ip"]), None)
        self.changes += 1

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        port = self.ports.get(name)
        if port is None or port.bridge != bridge:
            raise BackendError(f"{self.hypervisor}: no port {name!r} on bridge {bridge!r}")
        br = self.bridge(bridge)
        config = br.port(name)
        if config.tag == tag:
            return
        # the switch has no in-place retag: re-add with the same number (flows refer to it),
        # as vswitchd does
        br.del_port(name)
        br.add_port(name, config.ofport, tag=tag, trunks=config.trunks,
                    no_flood=config.no_flood)
        self.changes += 1

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        br = self.bridge(bridge)
        out = []
        for cfg in br.port_list:
            port = self.ports[cfg.name]
            out.append(SwitchPort(cfg.name, cfg.ofport, port.type, cfg.tag, port.options,
                                  port.external_ids))
        return out


class SimBackend:
    """The agent's switch backend over a :class:`SimSwitch` (no sockets, same requests)."""

    def __init__(self, switch: SimSwitch) -> None:
        self.switch = switch

    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None:
        self.switch.ensure_bridge(bridge, fail_secure=fail_secure)

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return self.switch.list_ports(bridge)

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int:
        return self.switch.add_port(bridge, name, type=type, options=options)

    def del_port(self, bridge: str, name: str) -> None:
        self.switch.del_port(bridge, name)

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None:
        self.switch.set_port_tag(bridge, name, tag)

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        """The simulation has no time and no wire to lose: BFD is not simulated, and the
        column is not kept (its tunnels show no bfd_status, so none is ever down)."""

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None:
        if not flows:
            return
        try:
            self.switch.bridge(bridge).add_flows(flows)
        except SwitchError as exc:
            raise BackendError(f"{self.switch.hypervisor} {bridge}: {exc}") from exc
        self.switch.changes += 1

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        try:
            removed = self.switch.bridge(bridge).del_flows(match, strict=strict)
        except SwitchError as exc:
            raise BackendError(f"{self.switch.hypervisor} {bridge}: {exc}") from exc
        if removed:
            self.switch.changes += 1

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        return self.switch.bridge(bridge).dump_flows("" if table is None else f"table={table}")
