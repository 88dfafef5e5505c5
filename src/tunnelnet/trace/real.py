"""``LabView`` of a lab on real namespaces: its state file and each vswitchd's control socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.state import LabState, StateFile
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.ovs import OvsSwitch
from tunnelnet.trace.view import NetworkInfo, PortInfo, VmInfo


class RealSwitch:
    """One vswitchd, asked through its control socket (a fresh connection per question, so a
    restarted daemon is simply asked again)."""

    def __init__(self, hypervisor: str, rundir: Path, timeout: float = 10.0) -> None:
        self.hypervisor = hypervisor
        self.rundir = rundir
        self.timeout = timeout

    def _call(self, request: m.Request) -> Any:
        try:
            with ControlClient(self.rundir, timeout=self.timeout) as ctl:
                return ctl.call(request)
        except TunnelnetError as exc:
            raise TraceError(f"{self.hypervisor}: vswitchd ({self.rundir}): {exc}") from exc

    def ports(self, bridge: str) -> list[PortInfo]:
        out = []
        for p in self._call(m.ListPorts(bridge)):
            mtu = p.get("underlay_mtu")
            out.append(PortInfo(name=p["name"], ofport=int(p["ofport"]), type=p["type"],
                                tag=p.get("tag"), options=dict(p.get("options") or {}),
                                underlay_mtu=int(mtu) if mtu is not None else None,
                                external_ids=dict(p.get("external_ids") or {}),
                                liveness=_liveness(p)))
        return out

    def trace(self, bridge: str, flow: str) -> dict[str, Any]:
        result = self._call(m.TraceFlow(bridge, flow, explain=True))
        trace: dict[str, Any] = result["trace"]
        return trace

    def dump_flows(self, bridge: str) -> list[str]:
        return [str(line) for line in self._call(m.DumpFlows(bridge))]


def _liveness(port: dict[str, Any]) -> dict[str, Any]:
    status = port.get("bfd_status") or {}
    if not status:
        return {}
    return {"state": status.get("state"), "diagnostic": status.get("diagnostic"),
            "since_change_s": port.get("bfd_since_change_s")}


class RealLab:
    def __init__(self, directory: Path, *, dhcp_ports: bool = False) -> None:
        """``dhcp_ports``: the networks' DHCP ports are endpoints too (``dhcp-<network>``),
        as a trace may name them; the page and the status show VMs only."""
        self.directory = directory
        self.state: LabState = StateFile(directory).load()
        self._endpoints = dict(self.state.vms)
        if dhcp_ports:
            from tunnelnet.lab.dhcp_ports import dhcp_ports as read_dhcp_ports

            self._endpoints.update(read_dhcp_ports(self.state))

    def vms(self) -> dict[str, VmInfo]:
        return {name: VmInfo(name=v.name, tenant=v.tenant, network=v.network,
                             hypervisor=v.hypervisor, mac=v.mac.lower(), ip=v.ip, mtu=v.mtu,
                             tap=v.tap, port_id=v.port_id)
                for name, v in self._endpoints.items()}

    def networks(self) -> dict[str, NetworkInfo]:
        out = {}
        for name, n in self.state.networks.items():
            seg = n.get("segment")
            out[name] = NetworkInfo(name=name, tenant=str(n.get("tenant", "")),
                                    type=str(n.get("type", "")),
                                    segment=int(seg) if seg is not None else None)
        return out

    def hypervisors(self) -> dict[str, str]:
        return {name: info["ip"] for name, info in self.state.hypervisors.items()}

    def switch(self, hypervisor: str) -> RealSwitch | OvsSwitch:
        info = self.state.hypervisors.get(hypervisor)
        if info is None:
            raise TraceError(f"no hypervisor {hypervisor!r} in this lab "
                             f"(hypervisors: {', '.join(sorted(self.state.hypervisors))})")
        if info.get("switch") == "ovs":
            return OvsSwitch(hypervisor, Path(info["rundir"]), info["netns"])
        return RealSwitch(hypervisor, Path(info["rundir"]))

    def vm_netns(self, vm: str) -> str:
        return self._endpoints[vm].netns

    def vm_interface(self, vm: str) -> str:
        """The endpoint's interface in its namespace: a VM's eth0, a DHCP port's ns-..."""
        if vm in self.state.vms:
            return "eth0"
        from tunnelnet.dhcp.plumbing import inner_name

        return inner_name(self._endpoints[vm].port_id)
