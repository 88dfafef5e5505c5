"""What the page draws: hypervisors with their bridges and tunnels, VMs, live status."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import tunnel_kinds
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.view import LabView


class StatusSource(Protocol):
    def agents_alive(self) -> dict[str, bool]: ...

    def port_status(self) -> dict[str, str]:
        """Controller port id -> status (ACTIVE, DOWN, ...)."""
        ...


class ControllerStatus:
    """Agents and port statuses from a real lab's controller (over its unix socket)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _ask(self) -> tuple[dict[str, bool], dict[str, str]]:
        from tunnelnet.lab.runner import LabRunner

        runner = LabRunner(self.directory)
        state = runner.file.load()
        with runner.client(state) as api:
            agents = {a["host"]: bool(a.get("alive")) for a in api.list("agent")}
            ports = {p["id"]: str(p["status"]) for p in api.list("port")}
        return agents, ports

    def agents_alive(self) -> dict[str, bool]:
        return self._ask()[0]

    def port_status(self) -> dict[str, str]:
        return self._ask()[1]


def snapshot(lab: LabView, status: StatusSource | None) -> dict[str, Any]:
    """The whole picture in one JSON document; a switch that does not answer is drawn as
    down, never an error for the page."""
    agents: dict[str, bool] = {}
    ports: dict[str, str] = {}
    errors: list[str] = []
    if status is not None:
        try:
            agents = status.agents_alive()
            ports = status.port_status()
        except TunnelnetError as exc:
            errors.append(f"controller: {exc}")
    hv_ips = lab.hypervisors()
    by_ip = {ip: name for name, ip in hv_ips.items()}
    hypervisors = []
    for name, ip in sorted(hv_ips.items()):
        tunnels = []
        switch_up = True
        try:
            for p in lab.switch(name).ports("br-tun"):
                if p.is_tunnel:
                    remote = p.options.get("remote_ip", "")
                    tunnels.append(
                        {
                            "port": p.name,
                            "type": p.type,
                            # as people write it, for the edge's label: "VXLAN", "Geneve"
                            "title": tunnel_kinds.kind(p.type).title,
                            "remote_ip": remote,
                            "remote_host": by_ip.get(remote),
                        }
                    )
        except (TraceError, TunnelnetError) as exc:
            switch_up = False
            errors.append(f"{name}: {exc}")
        hypervisors.append(
            {
                "name": name,
                "ip": ip,
                "agent_alive": agents.get(name),
                "switch_up": switch_up,
                "tunnels": tunnels,
            }
        )
    vms = [
        {
            "name": v.name,
            "tenant": v.tenant,
            "network": v.network,
            "hypervisor": v.hypervisor,
            "ip": v.ip,
            "mac": v.mac,
            "port": v.tap,
            "status": ports.get(v.port_id, "UNKNOWN" if status is not None else "ACTIVE"),
        }
        for v in sorted(lab.vms().values(), key=lambda v: v.name)
    ]
    networks = [
        {"name": n.name, "tenant": n.tenant, "type": n.type, "segment": n.segment}
        for n in sorted(lab.networks().values(), key=lambda n: n.name)
    ]
    return {"hypervisors": hypervisors, "vms": vms, "networks": networks, "errors": errors}
