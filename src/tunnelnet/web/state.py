"""What the page draws: hypervisors with their bridges and tunnels, the underlay, VMs, tenants
and networks, and the status the lab's records give (``tunnelnet.web.status``)."""

from __future__ import annotations

from typing import Any

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import names
from tunnelnet.packet import tunnel_kinds
from tunnelnet.trace.view import LabView, NetworkInfo, VmInfo
from tunnelnet.web.status import LabStatus, StatusSource


def _kinds() -> list[dict[str, Any]]:
    """The tunnel kinds the registry knows, as the page labels and colours them."""
    return [{"name": k.name, "title": k.title, "key_name": k.key_name}
            for k in tunnel_kinds.all_kinds()]


def _carried(kind: str, a: str, b: str, vms: list[VmInfo],
             networks: dict[str, NetworkInfo]) -> list[dict[str, Any]]:
    """The networks of tunnel kind ``kind`` a tunnel between hypervisors ``a`` and ``b``
    carries: those with a VM at both ends (the others' frames are dropped on arrival, or with
    l2population never sent)."""
    hosts: dict[str, set[str]] = {}
    for vm in vms:
        hosts.setdefault(vm.network, set()).add(vm.hypervisor)
    out = []
    for name, net in sorted(networks.items()):
        if net.type == kind and {a, b} <= hosts.get(name, set()):
            out.append({"name": name, "tenant": net.tenant, "key": net.segment})
    return out


PROVIDER_TYPES = ("vlan", "flat")  # networks that leave through the physical bridge, untunnelled


def _physical(lab: LabView, host: str) -> dict[str, Any] | None:
    """The hypervisor's physical bridge (br-eth1, for VLAN and flat networks) and its uplink,
    or None when it has none."""
    bridge = names.physical_bridge()
    try:
        ports = lab.switch(host).ports(bridge)
    except TunnelnetError:
        return None
    # the uplink is the bridge's one system port (the other is the patch to br-int)
    uplink = next((p.name for p in ports if p.type == "system"), names.PHYSICAL_UPLINK)
    return {"bridge": bridge, "uplink": uplink}


def _physical_links(hypervisors: list[dict[str, Any]], vms: list[VmInfo],
                    networks: dict[str, NetworkInfo]) -> list[dict[str, Any]]:
    """Pairs of hypervisors that VLAN or flat networks join over the physical network: the
    networks with a VM on both, each with its VLAN id (None for flat)."""
    hosts: dict[str, set[str]] = {}
    for vm in vms:
        hosts.setdefault(vm.network, set()).add(vm.hypervisor)
    with_bridge = sorted(h["name"] for h in hypervisors if h["physical"] is not None)
    out = []
    for i, a in enumerate(with_bridge):
        for b in with_bridge[i + 1:]:
            carried = [{"name": n.name, "tenant": n.tenant, "type": n.type, "key": n.segment}
                       for n in sorted(networks.values(), key=lambda n: n.name)
                       if n.type in PROVIDER_TYPES and {a, b} <= hosts.get(n.name, set())]
            if carried:
                out.append({"a": a, "b": b, "networks": carried})
    return out


def snapshot(lab: LabView, status: StatusSource | None) -> dict[str, Any]:
    """The whole picture in one JSON document. The lab's own lists (VMs, networks,
    hypervisors) must answer, else the caller reports the lab as down; a switch that does
    not answer is drawn as down, never an error for the page."""
    hv_ips = lab.hypervisors()
    vm_list = sorted(lab.vms().values(), key=lambda v: v.name)
    networks = lab.networks()
    errors: list[str] = []
    lab_status: LabStatus | None = None
    if status is not None:
        try:
            lab_status = status.read(lab)
        except TunnelnetError as exc:
            errors.append(f"status: {exc}")
    if lab_status is not None:
        errors.extend(lab_status.errors)
    by_ip = {ip: name for name, ip in hv_ips.items()}
    underlay_mtu: int | None = None
    hypervisors = []
    for name, ip in sorted(hv_ips.items()):
        tunnels = []
        switch_up = True
        try:
            for p in lab.switch(name).ports("br-tun"):
                if not p.is_tunnel:
                    continue
                remote = p.options.get("remote_ip", "")
                peer = by_ip.get(remote)
                found = tunnel_kinds.find(p.type)
                underlay_mtu = underlay_mtu or p.underlay_mtu
                tunnels.append({
                    "port": p.name, "type": p.type,
                    "title": found.title if found is not None else p.type,
                    "key_name": found.key_name if found is not None else "key",
                    "local_ip": p.options.get("local_ip") or ip,
                    "remote_ip": remote, "remote_host": peer,
                    "networks": _carried(p.type, name, peer, vm_list, networks)
                    if peer is not None else [],
                    # its BFD session: "up", "down", "init", "admin_down"; None without BFD
                    "state": p.liveness.get("state"),
                    "diagnostic": p.liveness.get("diagnostic"),
                    "since_change_s": p.liveness.get("since_change_s"),
                })
        except TunnelnetError as exc:
            switch_up = False
            errors.append(f"{name}: {exc}")
        agent = lab_status.agents.get(name) if lab_status is not None else None
        hypervisors.append({
            "name": name, "ip": ip,
            "physical": _physical(lab, name) if switch_up else None,
            "agent_alive": agent.alive if agent is not None else None,
            "agent_why": agent.why if agent is not None else "",
            "switch_up": switch_up, "tunnels": tunnels,
        })
    vm_status = lab_status.vm_status if lab_status is not None else {}
    vms = [{"name": v.name, "tenant": v.tenant, "network": v.network,
            "hypervisor": v.hypervisor, "ip": v.ip, "mac": v.mac, "port": v.tap,
            "status": vm_status.get(v.name, "UNKNOWN" if status is not None else "ACTIVE")}
           for v in vm_list]
    nets = [{"name": n.name, "tenant": n.tenant, "type": n.type, "segment": n.segment,
             "title": _title(n.type), "key_name": _key_name(n.type)}
            for n in sorted(networks.values(), key=lambda n: n.name)]
    return {
        "lab": {
            "kind": lab_status.kind.value if lab_status is not None else None,
            "counters_move": lab_status.counters_move if lab_status is not None else None,
            "counters_note": lab_status.counters_note if lab_status is not None else "",
        },
        "underlay": {"mtu": underlay_mtu,
                     "addresses": {name: ip for name, ip in sorted(hv_ips.items())}},
        "tunnel_kinds": _kinds(),
        "hypervisors": hypervisors, "vms": vms, "networks": nets, "errors": errors,
        "physical_links": _physical_links(hypervisors, vm_list, networks),
    }


def _title(net_type: str) -> str:
    found = tunnel_kinds.find(net_type)
    return found.title if found is not None else {"vlan": "VLAN"}.get(net_type, net_type)


def _key_name(net_type: str) -> str:
    """What a network's segment is called: a tunnel kind's key name, else a VLAN id."""
    found = tunnel_kinds.find(net_type)
    if found is not None:
        return found.key_name
    return "id" if net_type == "vlan" else "segment"
