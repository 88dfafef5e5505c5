"""What one hypervisor should hold, computed as its agent computes it.

The agent's own pure planning (:mod:`tunnelnet.agent.desired` and the flow builders behind it)
is run on the controller's state and on the ports the hypervisor's switch has, so a flow the
agent starts to install is expected here without a change to verify.

Two inputs are the agent's own choices, not the controller's, and are read from the switch:

- **Local VLANs.** Each agent numbers its networks itself (``agent/local_vlan.py``). A
  network's local VLAN is taken from the flow that translates its key or provider VLAN into
  the local VLAN (br-tun's table 3/4/6 flow for its key, br-int's flow from the physical
  bridge), found by the key the agent's own builder gives that flow; only when that flow is
  missing from the VLAN most of its vNICs carry; and when neither exists, the lowest free
  one, as the agent would allocate it. A vNIC is then judged against its network's VLAN, so
  one moved by hand is found even when it is the network's only vNIC.
- **The cookie** of the current agent generation: the one br-int's canary flow carries (each
  agent start installs everything under its new cookie, then sweeps the others).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tunnelnet.agent import br_phys, br_tun, desired
from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.desired import AgentConfig, Binding, TunnelPort
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.local_vlan import LocalVlanManager
from tunnelnet.agent.service import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.view import CloudView, Network
from tunnelnet.packet import tunnel_kinds
from tunnelnet.switch.pipeline import IntTable
from tunnelnet.verify.diff import VnicIntent, current_cookie
from tunnelnet.verify.flows import FlowKey, ParsedFlow, parse_line, parse_wanted


@dataclass(frozen=True, slots=True)
class SwitchState:
    """What was read from one hypervisor's switch: its bridges, and for each bridge the
    agent owns that exists, its ports and flows."""

    bridges: frozenset[str]
    ports: Mapping[str, Sequence[SwitchPort]]
    flows: Mapping[str, Sequence[ParsedFlow]]
    # bridge -> (line, why) of dump-flows lines the parser could not read
    unreadable: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)


@dataclass(slots=True)
class Intent:
    cookie: int
    flows: dict[str, dict[FlowKey, ParsedFlow]]  # bridge -> wanted flows
    tunnels: list[TunnelPort]
    vnics: list[VnicIntent]
    local_vlans: dict[str, int]  # network id -> VLAN
    vlan_source: dict[str, str] = field(default_factory=dict)  # network id -> evidence
    missing_ports: list[tuple[str, str]] = field(default_factory=list)  # (bridge, port)


def agent_bridges(conf: AgentConfig) -> list[str]:
    return [BR_INT, BR_TUN, *sorted(set(conf.bridge_mappings.values()))]


def _key_of(flow: FlowMod) -> FlowKey:
    return parse_line(flow.add_text(0)).key


def _translation_key(conf: AgentConfig, network: Network,
                     int_ports: Sequence[SwitchPort]) -> tuple[str, FlowKey] | None:
    """Where the flow that gives ``network`` its local VLAN sits: (bridge, key). Its key does
    not depend on the VLAN (only its actions do), so the builder is asked with any VLAN."""
    if network.segment is not None and tunnel_kinds.is_tunnel(network.network_type):
        return BR_TUN, _key_of(br_tun.local_vlan(network.network_type, 1, network.segment))
    bridge = conf.bridge_mappings.get(network.physical_network or "")
    if bridge is None or network.network_type not in ("vlan", "flat"):
        return None
    int_patch = next((p.ofport for p in int_ports if p.name == br_phys.int_patch_name(bridge)),
                     None)
    if int_patch is None:
        return None
    return BR_INT, _key_of(br_phys.inbound(int_patch, 1, network.network_type,
                                           network.segment))


def learn_local_vlans(conf: AgentConfig, bound: Sequence[Binding], switch: SwitchState,
                      tags: Mapping[str, int | None]) -> tuple[dict[str, int], dict[str, str]]:
    """network id -> the local VLAN the hypervisor uses for it, and where that was read."""
    found: dict[str, int] = {}
    source: dict[str, str] = {}
    int_ports = switch.ports.get(BR_INT, ())
    networks = {b.network.id: b.network for b in bound}
    for net_id, network in sorted(networks.items()):
        where = _translation_key(conf, network, int_ports)
        if where is not None:
            bridge, key = where
            flow = next((f for f in switch.flows.get(bridge, ()) if f.key == key), None)
            if flow is not None and flow.vlan_sets:
                found[net_id] = flow.vlan_sets[-1]
                source[net_id] = f"{bridge} table {key[0]} flow {key[2]}"
                continue
        votes = Counter(t for b in bound if b.network.id == net_id
                        for t in [tags.get(b.vnic.name)] if t is not None and t != DEAD_VLAN)
        if votes:
            # most vNICs win; among equals the lowest, so the answer does not depend on order
            best = max(votes.values())
            found[net_id] = min(v for v, n in votes.items() if n == best)
            source[net_id] = "its vNICs' tag (no translation flow installed)"
    return found, source


def compute(conf: AgentConfig, view: CloudView, switch: SwitchState,
            labels: Mapping[str, str] | None = None) -> Intent:
    """The hypervisor's intent, from the controller's ``view`` and its switch's ports."""
    labels = labels or {}
    int_ports = list(switch.ports.get(BR_INT, ()))
    tun_ports = list(switch.ports.get(BR_TUN, ()))
    tags = {p.name: p.tag for p in int_ports}
    vnics = desired.vnics_of(int_ports, patch_tun=PATCH_TUN)
    bound, dead = desired.plan_bindings(conf, view, vnics)

    learned, source = learn_local_vlans(conf, bound, switch, tags)
    lvm = LocalVlanManager()
    for net_id, vid in sorted(learned.items(), key=lambda kv: kv[1]):
        try:
            lvm.restore(net_id, vid)
        except ValueError:
            source.pop(net_id, None)  # two networks on one VLAN: the second gets its own
    local_vlans = desired.assign_local_vlans(lvm, bound)
    for net_id in local_vlans:
        source.setdefault(net_id, "none installed: the lowest free VLAN, as the agent picks")

    phys_ports = {b: list(switch.ports.get(b, ())) for b in set(conf.bridge_mappings.values())}
    provider = desired.provider_flows(conf, bound, local_vlans, int_ports, phys_ports)
    int_flows = desired.int_bridge_flows(dead, provider)
    canary_keys = {_key_of(f) for f in int_flows if f.table == IntTable.CANARY}
    installed_int = switch.flows.get(BR_INT, ())
    canary = next((f for f in installed_int if f.key in canary_keys), None)
    every = [f for flows in switch.flows.values() for f in flows]
    cookie = current_cookie(canary, every) or 0

    wanted: dict[str, dict[FlowKey, ParsedFlow]] = {BR_INT: parse_wanted(int_flows, cookie)}
    for bridge, flows in provider.bridges.items():
        wanted[bridge] = parse_wanted(flows, cookie)

    local_networks = {b.network.id: b.network for b in bound}
    tunnels = desired.plan_tunnels(conf, view, list(local_networks.values()))
    missing: list[tuple[str, str]] = []
    patch_int = next((p.ofport for p in tun_ports if p.name == PATCH_INT), None)
    if BR_INT in switch.bridges and not any(p.name == PATCH_TUN for p in int_ports):
        missing.append((BR_INT, PATCH_TUN))
    if BR_TUN in switch.bridges:
        if patch_int is None:
            missing.append((BR_TUN, PATCH_INT))
        else:
            names = {t.name for t in tunnels}
            tunnel_ofports = {p.name: p.ofport for p in tun_ports if p.name in names}
            wanted[BR_TUN] = parse_wanted(desired.br_tun_flows(
                conf, view, cookie=cookie, patch_int_ofport=patch_int,
                local_networks=local_networks.values(), local_vlans=local_vlans,
                tunnel_ofports=tunnel_ofports), cookie)

    def name(ident: str) -> str:
        return labels.get(ident, ident)

    intents = [VnicIntent(b.vnic.name, local_vlans[b.network.id],
                          f"{name(b.port.id)} on {name(b.network.id)}") for b in bound]
    intents += [VnicIntent(v.name, DEAD_VLAN,
                           f"iface-id {v.iface_id or '(none)'} is no port of this host "
                           "the controller knows") for v in dead]
    return Intent(cookie=cookie, flows=wanted, tunnels=tunnels, vnics=intents,
                  local_vlans=local_vlans, vlan_source=source, missing_ports=missing)
