"""The lab's DHCP ports as endpoints a trace can name (``dhcp-<network>``): each is a port of
its network like a VM's, on the hypervisor that runs the DHCP agent, with dnsmasq behind it
in its namespace. Read from the controller when asked, since the DHCP agent makes and
removes them on its own (a subnet's enable_dhcp turned off takes its network's away)."""

from __future__ import annotations

from tunnelnet.dhcp import plumbing
from tunnelnet.dhcp.config import DEVICE_OWNER
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import names
from tunnelnet.lab.state import LabState, VmRecord

PREFIX = "dhcp-"


def endpoint_name(network: str) -> str:
    return f"{PREFIX}{network}"


def dhcp_ports(state: LabState) -> dict[str, VmRecord]:
    """``dhcp-<network>`` -> the DHCP port as a VM-like record ({} when the lab serves no
    DHCP or its controller does not answer)."""
    if not any(info.get("dhcp") for info in state.hypervisors.values()):
        return {}
    from tunnelnet.client.http import Client

    by_id = {str(n["id"]): name for name, n in state.networks.items()}
    try:
        with Client(state.server_url, state.admin_token, timeout=5.0) as api:
            ports = api.list("port", device_owner=DEVICE_OWNER)
    except TunnelnetError:
        return {}
    out: dict[str, VmRecord] = {}
    for port in ports:
        network = by_id.get(str(port["network_id"]))
        if network is None or not port.get("fixed_ips"):
            continue
        net = state.networks[network]
        out[endpoint_name(network)] = VmRecord(
            name=endpoint_name(network), tenant=str(net.get("tenant", "")), network=network,
            hypervisor=str(port.get("binding:host_id") or ""),
            netns=plumbing.namespace_name(f"{names.PREFIX}-", str(port["network_id"])),
            port_id=str(port["id"]), mac=str(port["mac_address"]).lower(),
            ip=str(port["fixed_ips"][0]["ip_address"]), mtu=int(net.get("mtu") or 1500),
            tap=plumbing.tap_name(str(port["id"])))
    return out
