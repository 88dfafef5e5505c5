"""``LabView`` of a simulated lab held in this process (``tunnelnet.lab.sim.SimLab``).

The switches are the same ``tunnelnet.switch.Bridge`` objects a vswitchd runs, programmed by
real agents; only the I/O is missing. So the trace's walker reads the same tables the same
way, for ``tunnelnet trace`` (through the sim server's ``labview`` op) and for the simulated
lab's own ``ping`` and ``verify`` (in this process). It lives in the lab layer because the
simulation walks with it; the walker (``tunnelnet.trace.journey`` and the modules it
imports) sits below the lab and knows nothing of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunnelnet.lab.sim_switch import TUNNEL_TYPES, SimSwitch
from tunnelnet.switch import SwitchError
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.view import NetworkInfo, PortInfo, VmInfo

if TYPE_CHECKING:
    from tunnelnet.lab.sim import SimLab
    from tunnelnet.packet.fields import FlowKey
    from tunnelnet.switch.trace import TableWalk


class SimSwitchView:
    def __init__(self, switch: SimSwitch, underlay_mtu: int) -> None:
        self.switch = switch
        self.underlay_mtu = underlay_mtu

    def _bridge(self, bridge: str) -> Any:
        if bridge not in self.switch.bridges:
            raise TraceError(f"{self.switch.hypervisor}: no bridge {bridge!r}")
        return self.switch.bridges[bridge]

    def ports(self, bridge: str) -> list[PortInfo]:
        br = self._bridge(bridge)
        out = []
        for cfg in br.ports():
            port = self.switch.ports.get(cfg.name)
            kind = port.type if port is not None else "system"
            out.append(PortInfo(name=cfg.name, ofport=cfg.ofport, type=kind, tag=cfg.tag,
                                options=dict(port.options) if port is not None else {},
                                underlay_mtu=self.underlay_mtu if kind in TUNNEL_TYPES
                                else None,
                                external_ids=dict(port.external_ids) if port else {}))
        return out

    def trace(self, bridge: str, flow: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self._bridge(bridge).trace(flow).to_json()
        except SwitchError as exc:
            raise TraceError(f"{self.switch.hypervisor} {bridge}: {exc}") from exc
        return result

    def table_walk(self, bridge: str, flow: str, key: FlowKey | None = None) -> TableWalk:
        """``trace`` as data, without the words (what the walker asks for a verdict);
        ``key``: the flow's key, when the walker has it (then the text is not parsed)."""
        try:
            result: TableWalk = self._bridge(bridge).table_walk(flow, key)
        except SwitchError as exc:
            raise TraceError(f"{self.switch.hypervisor} {bridge}: {exc}") from exc
        return result

    def dump_flows(self, bridge: str) -> list[str]:
        return [str(line) for line in self._bridge(bridge).dump_flows()]


class SimLabView:
    def __init__(self, lab: SimLab) -> None:
        self.lab = lab

    def vms(self) -> dict[str, VmInfo]:
        return {v.name: VmInfo(name=v.name, tenant=v.tenant, network=v.network,
                               hypervisor=v.hypervisor, mac=v.mac.lower(), ip=v.ip, mtu=v.mtu,
                               tap=v.vnic, port_id=v.port_id)
                for v in self.lab.vms.values()}

    def networks(self) -> dict[str, NetworkInfo]:
        out = {}
        for net in self.lab.topo.networks:
            segment = net.segment
            net_id = self.lab.network_ids.get(net.name)
            if net_id is not None:
                with self.lab.store.read() as txn:
                    doc = txn.get("network", net_id)
                if doc is not None and doc.get("provider:segmentation_id") is not None:
                    segment = int(doc["provider:segmentation_id"])
            out[net.name] = NetworkInfo(net.name, net.tenant, net.type, segment)
        return out

    def hypervisors(self) -> dict[str, str]:
        return {hv.name: hv.ip for hv in self.lab.topo.hypervisors}

    def switch(self, hypervisor: str) -> SimSwitchView:
        sw = self.lab.switches.get(hypervisor)
        if sw is None:
            raise TraceError(f"no hypervisor {hypervisor!r} in this simulation "
                             f"(hypervisors: {', '.join(sorted(self.lab.switches))})")
        return SimSwitchView(sw, self.lab.topo.underlay_mtu)
