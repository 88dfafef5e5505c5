"""What l2population needs: per network, which hypervisors have ports, with each port's MAC
and addresses, and each hypervisor's tunnel endpoint.

Neutron's l2pop mechanism driver pushes this as fdb entries over RPC; here agents read it
(`GET /v2.0/l2population`) after a resync and follow port and agent events on the watch
stream afterwards. Ports of every status are listed with their status, so the agent decides
(Neutron adds a port's fdb entries when it becomes ACTIVE).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tunnelnet.server import agents
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller
from tunnelnet.store.base import Doc


def l2population(
    ctl: Controller, caller: Caller, network_id: str | None = None, host: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    caller.require_admin_or_agent("l2population")
    with ctl.store.read() as txn:
        networks = txn.list("network")
        ports = txn.list("port")
        agent_docs = txn.list("agent")
        revision = txn.revision
    live = agents.lives(ctl)
    endpoints: dict[str, Doc] = {}
    for agent in agent_docs:
        # a host may run several agent types; the one with a tunnel IP is the one we want
        if agent.get("configurations", {}).get("tunneling_ip") or agent["host"] not in endpoints:
            endpoints[agent["host"]] = agent
    by_network: dict[str, dict[str, list[Doc]]] = defaultdict(lambda: defaultdict(list))
    for port in ports:
        if port["binding:host_id"]:
            by_network[port["network_id"]][port["binding:host_id"]].append(port)
    out = []
    for network in networks:
        if network_id is not None and network["id"] != network_id:
            continue
        hosts = by_network.get(network["id"], {})
        if host is not None and host not in hosts:
            continue
        entries = []
        for name in sorted(hosts):
            endpoint = endpoints.get(name)
            entries.append(
                {
                    "host": name,
                    "tunneling_ip": (endpoint or {}).get("configurations", {}).get("tunneling_ip"),
                    "agent_alive": endpoint is not None and endpoint["id"] in live,
                    "ports": [
                        {
                            "id": p["id"],
                            "mac_address": p["mac_address"],
                            "ip_addresses": [ip["ip_address"] for ip in p["fixed_ips"]],
                            "status": p["status"],
                            "device_owner": p["device_owner"],
                        }
                        for p in hosts[name]
                    ],
                }
            )
        out.append(
            {
                "network_id": network["id"],
                "network_type": network["provider:network_type"],
                "segmentation_id": network["provider:segmentation_id"],
                "physical_network": network["provider:physical_network"],
                "mtu": network["mtu"],
                "hosts": entries,
            }
        )
    return out, revision
