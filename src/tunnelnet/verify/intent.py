"""What one hypervisor should hold, computed as its agent computes it.

The agent's own pure planning (:mod:`tunnelnet.agent.desired` and the flow builders behind it)
is run on the controller's state and on the ports the hypervisor's switch has, so a flow the
agent starts to install is expected here without a change to verify.

Three inputs are the agent's own choices, not the controller's, and are read from the switch:

- **Local VLANs.** Each agent numbers its networks itself (``agent/local_vlan.py``). Two
  witnesses on the switch say which VLAN a network has: the flow that translates its key or
  provider VLAN into the local VLAN (br-tun's table 3/4/6 flow for its key, br-int's flow
  from the physical bridge; found by the key the agent's own builder gives that flow, which
  does not depend on the VLAN), and the VLAN most of its vNICs carry. Where only one speaks,
  it is believed; where they disagree, the VLAN under which the agent's plan explains more
  of the installed flows and tags wins (the translation flow on a tie): a vNIC moved by hand
  is found even as its network's only vNIC, and a translation flow changed by hand is blamed
  rather than the vNICs and flood lists that disagree with it. Where neither speaks, the
  lowest free VLAN, as the agent would allocate it.
- **Tunnels that are down.** A tunnel whose BFD session went down is out of the flood lists
  by the agent's choice (``agent/liveness.py``), read from its ``bfd_status`` on the switch.
- **The cookie** of the current agent generation: the one br-int's canary flow carries (each
  agent start installs everything under its new cookie, then sweeps the others).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tunnelnet.agent import br_phys, br_tun, desired, liveness
from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.desired import AgentConfig, Binding, TunnelPort
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.local_vlan import LocalVlanManager
from tunnelnet.agent.service import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.view import CloudView, Network, Vnic
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


@dataclass(frozen=True, slots=True)
class VlanEvidence:
    """What the switch says about each network's local VLAN, by two witnesses."""

    by_flow: dict[str, tuple[int, str]]  # network id -> (VLAN, the translation flow)
    by_tags: dict[str, int]  # network id -> the VLAN most of its vNICs carry


def vlan_evidence(conf: AgentConfig, bound: Sequence[Binding], switch: SwitchState,
                  tags: Mapping[str, int | None]) -> VlanEvidence:
    by_flow: dict[str, tuple[int, str]] = {}
    by_tags: dict[str, int] = {}
    int_ports = switch.ports.get(BR_INT, ())
    networks = {b.network.id: b.network for b in bound}
    for net_id, network in sorted(networks.items()):
        where = _translation_key(conf, network, int_ports)
        if where is not None:
            bridge, key = where
            flow = next((f for f in switch.flows.get(bridge, ()) if f.key == key), None)
            if flow is not None and flow.vlan_sets:
                by_flow[net_id] = (flow.vlan_sets[-1], f"{bridge} table {key[0]} flow {key[2]}")
        votes = Counter(t for b in bound if b.network.id == net_id
                        for t in [tags.get(b.vnic.name)] if t is not None and t != DEAD_VLAN)
        if votes:
            # most vNICs win; among equals the lowest, so the answer does not depend on order
            best = max(votes.values())
            by_tags[net_id] = min(v for v, n in votes.items() if n == best)
    return VlanEvidence(by_flow, by_tags)


@dataclass(frozen=True, slots=True)
class _Planner:
    """The agent's planning of one host for a given choice of local VLANs."""

    conf: AgentConfig
    view: CloudView
    switch: SwitchState
    bound: Sequence[Binding]
    dead: Sequence[Vnic]
    tunnels: Sequence[TunnelPort]
    cookie: int

    def flows(self, local_vlans: Mapping[str, int]) -> dict[str, dict[FlowKey, ParsedFlow]]:
        switch, conf = self.switch, self.conf
        int_ports = list(switch.ports.get(BR_INT, ()))
        tun_ports = list(switch.ports.get(BR_TUN, ()))
        phys_ports = {b: list(switch.ports.get(b, ())) for b in set(conf.bridge_mappings.values())}
        provider = desired.provider_flows(conf, self.bound, local_vlans, int_ports, phys_ports)
        wanted = {BR_INT: parse_wanted(desired.int_bridge_flows(self.dead, self.bound, provider),
                                       self.cookie)}
        for bridge, flows in provider.bridges.items():
            wanted[bridge] = parse_wanted(flows, self.cookie)
        patch_int = next((p.ofport for p in tun_ports if p.name == PATCH_INT), None)
        if BR_TUN in switch.bridges and patch_int is not None:
            names = {t.name for t in self.tunnels}
            local_networks = {b.network.id: b.network for b in self.bound}
            wanted[BR_TUN] = parse_wanted(desired.br_tun_flows(
                conf, self.view, cookie=self.cookie, patch_int_ofport=patch_int,
                local_networks=local_networks.values(), local_vlans=local_vlans,
                tunnel_ofports={p.name: p.ofport for p in tun_ports if p.name in names},
                down_tunnels=frozenset(p.name for p in tun_ports
                                       if liveness.tunnel_down(p.bfd_status))),
                self.cookie)
        return wanted

    def agreement(self, local_vlans: Mapping[str, int]) -> int:
        """How much of what is installed this choice explains: flows present with the very
        actions it wants, and vNICs on the VLAN it gives their network."""
        wanted = self.flows(local_vlans)
        flows = sum(1 for bridge, want in wanted.items()
                    for f in self.switch.flows.get(bridge, ())
                    if (w := want.get(f.key)) is not None and w.actions == f.actions)
        tags = {p.name: p.tag for p in self.switch.ports.get(BR_INT, ())}
        return flows + sum(1 for b in self.bound
                           if tags.get(b.vnic.name) == local_vlans.get(b.network.id))


def _choose_vlans(planner: _Planner, evidence: VlanEvidence
                  ) -> tuple[dict[str, int], dict[str, str]]:
    """network id -> local VLAN, and why. The translation flow is the first witness, the
    vNICs' tags the second; where both speak and disagree (a vNIC moved by hand, or the
    translation flow changed by hand), the VLAN that explains more of the installed flows
    and tags wins, the translation flow on a tie."""
    chosen: dict[str, int] = {}
    source: dict[str, str] = {}
    for net_id, (vid, where) in evidence.by_flow.items():
        chosen[net_id], source[net_id] = vid, where
    for net_id, vid in evidence.by_tags.items():
        if net_id not in chosen:
            chosen[net_id] = vid
            source[net_id] = "its vNICs' tag (no translation flow installed)"
    lvm = LocalVlanManager()
    for net_id, vid in sorted(chosen.items(), key=lambda kv: kv[1]):
        try:
            lvm.restore(net_id, vid)
        except ValueError:
            source.pop(net_id, None)  # two networks on one VLAN: the second gets its own
    local_vlans = desired.assign_local_vlans(lvm, planner.bound)
    for net_id, (vid, where) in sorted(evidence.by_flow.items()):
        other = evidence.by_tags.get(net_id)
        if other is None or other == vid:
            continue
        scores = {v: planner.agreement({**local_vlans, net_id: v}) for v in (vid, other)}
        if scores[other] > scores[vid]:
            local_vlans[net_id] = other
            source[net_id] = (f"its vNICs' tag, which more installed flows agree with than "
                              f"with {where}'s VLAN {vid}")
    for net_id in local_vlans:
        source.setdefault(net_id, "none installed: the lowest free VLAN, as the agent picks")
    return local_vlans, source


def compute(conf: AgentConfig, view: CloudView, switch: SwitchState,
            labels: Mapping[str, str] | None = None) -> Intent:
    """The hypervisor's intent, from the controller's ``view`` and its switch's ports."""
    labels = labels or {}
    int_ports = list(switch.ports.get(BR_INT, ()))
    tun_ports = list(switch.ports.get(BR_TUN, ()))
    tags = {p.name: p.tag for p in int_ports}
    vnics = desired.vnics_of(int_ports, patch_tun=PATCH_TUN)
    bound, dead = desired.plan_bindings(conf, view, vnics)

    # the generation: br-int's canary (it depends on no network, so no VLAN is needed yet)
    canary_keys = {_key_of(f) for f in desired.br_int_flows(dead)
                   if f.table == IntTable.CANARY}
    canary = next((f for f in switch.flows.get(BR_INT, ()) if f.key in canary_keys), None)
    every = [f for flows in switch.flows.values() for f in flows]
    cookie = current_cookie(canary, every) or 0

    local_networks = {b.network.id: b.network for b in bound}
    tunnels = desired.plan_tunnels(conf, view, list(local_networks.values()))
    planner = _Planner(conf, view, switch, bound, dead, tunnels, cookie)
    local_vlans, source = _choose_vlans(planner, vlan_evidence(conf, bound, switch, tags))
    wanted = planner.flows(local_vlans)

    missing: list[tuple[str, str]] = []
    if BR_INT in switch.bridges and not any(p.name == PATCH_TUN for p in int_ports):
        missing.append((BR_INT, PATCH_TUN))
    if BR_TUN in switch.bridges and not any(p.name == PATCH_INT for p in tun_ports):
        missing.append((BR_TUN, PATCH_INT))

    def name(ident: str) -> str:
        return labels.get(ident, ident)

    intents = [VnicIntent(b.vnic.name, local_vlans[b.network.id],
                          f"{name(b.port.id)} on {name(b.network.id)}") for b in bound]
    intents += [VnicIntent(v.name, DEAD_VLAN,
                           f"iface-id {v.iface_id or '(none)'} is no port of this host "
                           "the controller knows") for v in dead]
    return Intent(cookie=cookie, flows=wanted, tunnels=tunnels, vnics=intents,
                  local_vlans=local_vlans, vlan_source=source, missing_ports=missing)
