"""Representative hypervisor states and the full flow set the agent programs for each.

The agent runs its real rounds against the in-memory fakes (tests/support/agent_fakes.py), and
every FlowMod it hands to a bridge's applier is recorded, so a test sees exactly what the agent
wants on br-int, br-tun and each physical bridge: VXLAN and GRE networks, l2population on and
off, the ARP responder on and off, VLAN and flat networks, and unbound vNICs.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.applier import FlowApplier
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.service import Agent, AgentTimers

_FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
COOKIE = 0x5EED


@dataclass(frozen=True, slots=True)
class State:
    name: str
    tunnel_types: frozenset[str]
    l2pop: bool = False
    arp_responder: bool = False
    provider: bool = False  # VLAN and flat networks through br-eth1


STATES: tuple[State, ...] = (
    State("vxlan-gre-mesh", frozenset({"vxlan", "gre"})),
    State("vxlan-gre-l2pop", frozenset({"vxlan", "gre"}), l2pop=True),
    State("vxlan-gre-l2pop-arp", frozenset({"vxlan", "gre"}), l2pop=True, arp_responder=True),
    State("vxlan-arp-without-l2pop", frozenset({"vxlan"}), arp_responder=True),
    State("provider-and-vxlan", frozenset({"vxlan"}), l2pop=True, arp_responder=True,
          provider=True),
)


def _net(net_id: str, kind: str, seg: int | None, physnet: str | None = None
         ) -> dict[str, Any]:
    return {"id": net_id, "provider:network_type": kind, "provider:segmentation_id": seg,
            "provider:physical_network": physnet}


def _port(port_id: str, net_id: str, mac: str, ip: str, host: str) -> dict[str, Any]:
    return {"id": port_id, "network_id": net_id, "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"ip_address": ip}], "status": "DOWN"}


def _cloud(state: State) -> tuple[FakeController, FakeSwitch]:
    ctl, sw = FakeController(), FakeSwitch()
    nets = [_net("net-a", "vxlan", 1001), _net("net-b", "vxlan", 1002),
            _net("net-g", "gre", 77)]
    if state.provider:
        nets += [_net("net-v", "vlan", 1100, "physnet1"), _net("net-f", "flat", None,
                                                                "physnet1")]
    for net in nets:
        ctl.change("network", "create", net)
    for host, ip, kinds in (("hv2", "192.0.2.2", ["vxlan", "gre"]),
                            ("hv3", "192.0.2.3", ["vxlan"])):
        ctl.change("agent", "create", {"host": host, "tunnel_ip": ip, "tunnel_types": kinds,
                                       "alive": True})
    ports = [("p1", "net-a", 1, "hv1"), ("p2", "net-a", 2, "hv2"), ("p3", "net-a", 3, "hv3"),
             ("p4", "net-g", 4, "hv1"), ("p5", "net-g", 5, "hv2"), ("p6", "net-b", 6, "hv3")]
    if state.provider:
        ports += [("p7", "net-v", 7, "hv1"), ("p8", "net-f", 8, "hv1")]
    sw.ensure_bridge("br-int", fail_secure=True)
    for port_id, net_id, n, host in ports:
        ctl.change("port", "create", _port(port_id, net_id, f"fa:16:3e:00:00:{n:02x}",
                                           f"10.0.0.{n}", host))
        if host == "hv1":
            sw.plug("br-int", f"tap{n}", port_id)
    sw.plug("br-int", "tap-stranger", "port-of-nobody")  # stays on the dead VLAN
    return ctl, sw


@contextmanager
def _recording() -> Iterator[dict[str, list[FlowMod]]]:
    """Records the last flow set each bridge's applier was asked to hold."""
    seen: dict[str, list[FlowMod]] = {}
    # ``apply`` hands its flows to ``apply_groups`` as one group: this sees both
    original = FlowApplier.apply_groups

    def apply_groups(self: FlowApplier, groups: Mapping[Hashable, Sequence[FlowMod]]
                     ) -> tuple[int, int]:
        seen[self.bridge] = [flow for flows in groups.values() for flow in flows]
        return original(self, groups)

    FlowApplier.apply_groups = apply_groups  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        FlowApplier.apply_groups = original  # type: ignore[method-assign]


def desired_flows(state: State) -> dict[str, list[FlowMod]]:
    """bridge -> the FlowMods the agent wants there once it has converged on ``state``."""
    ctl, sw = _cloud(state)
    mappings = {"physnet1": "br-eth1"} if state.provider else {}
    if state.provider:
        sw.ensure_bridge("br-eth1", fail_secure=True)
    conf = AgentConfig("hv1", "192.0.2.1", state.tunnel_types, l2pop=state.l2pop,
                       arp_responder=state.arp_responder, bridge_mappings=mappings)
    agent = Agent(conf, ctl, sw, timers=_FAST, cookie=COOKIE)
    with _recording() as seen:
        for _ in range(3):
            agent.run_round()
    return seen


def flow_texts(state: State) -> dict[str, list[str]]:
    """bridge -> the add-flow text of each wanted flow, in the agent's order."""
    return {bridge: [f.add_text(COOKIE) for f in flows]
            for bridge, flows in sorted(desired_flows(state).items())}
