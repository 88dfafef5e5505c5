"""From the cloud's state to the bridges this host should have: a pure computation.

``plan_bindings`` decides which local vNICs are bound to which network (and so which networks
need a local VLAN here); ``plan_tunnels`` which tunnel ports should exist; ``br_tun_flows``
the whole flow set of br-tun given the tunnel ports' numbers. The agent plans all of it on
every change and applies the difference; what a plan reuses from the last one (a network's
flows, its peers, a vNIC's spoofing protection) is reused only when it was computed from the
very same inputs, so the result is always what planning from scratch gives.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from tunnelnet.agent import br_int, br_phys, br_tun
from tunnelnet.agent.backend import SwitchPort
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.agent.local_vlan import LocalVlanManager
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.tunnels import tunnel_port_name as _tunnel_port_name
from tunnelnet.agent.view import CloudView, Network, Peer, Port, Vnic
from tunnelnet.packet import tunnel_kinds

# a pure function of (type, address) asked for every peer of every local network each
# round: parsing the address each time was a tenth of a 1,000-hypervisor simulation's time
_tunnel_name = functools.lru_cache(maxsize=1 << 16)(_tunnel_port_name)
# a network re-planned for a port that came or went mostly floods to the same tunnels as
# before: the flood list (a text of every tunnel's output) is made once per list
_flood_to_tunnels = functools.lru_cache(maxsize=4096)(br_tun.flood_to_tunnels)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    host: str
    tunnel_ip: str
    tunnel_types: frozenset[str] = frozenset({"vxlan"})
    l2pop: bool = False
    arp_responder: bool = False
    # physical network -> the bridge that reaches it, for VLAN and flat networks
    bridge_mappings: Mapping[str, str] = field(default_factory=dict)
    # the switch is Open vSwitch, which drops a frame too big for its tunnel without a word:
    # br-tun sends such frames to the agent's MTU doctor (agent/mtu_doctor.py)
    mtu_doctor: bool = False

    def __hash__(self) -> int:  # the mapping is never mutated; hash what identifies us
        return hash((self.host, self.tunnel_ip, self.tunnel_types, self.l2pop,
                     self.arp_responder, tuple(sorted(self.bridge_mappings.items())),
                     self.mtu_doctor))

    def carries(self, network: Network) -> bool:
        """Tunnel networks of our tunnel types, provider networks of a mapped physnet."""
        if tunnel_kinds.is_tunnel(network.network_type):
            return network.network_type in self.tunnel_types and network.segment is not None
        if network.network_type == "vlan":
            return network.physical_network in self.bridge_mappings and \
                network.segment is not None
        if network.network_type == "flat":
            return network.physical_network in self.bridge_mappings
        return False


@dataclass(frozen=True, slots=True)
class Binding:
    vnic: Vnic
    port: Port
    network: Network


@dataclass(frozen=True, slots=True)
class TunnelPort:
    name: str
    network_type: str
    remote_ip: str


def vnics_of(int_ports: Iterable[SwitchPort], *, patch_tun: str) -> list[Vnic]:
    """The VM interfaces among br-int's ports: everything but patch ports and ports that
    have no OpenFlow number yet."""
    return [Vnic(p.name, p.ofport, p.external_ids.get("iface-id"),
                 p.external_ids.get("attached-mac"))
            for p in int_ports if p.name != patch_tun and p.ofport > 0 and p.type != "patch"]


def plan_bindings(conf: AgentConfig, view: CloudView, vnics: Iterable[Vnic]
                  ) -> tuple[list[Binding], list[Vnic]]:
    """Bound vNICs and the ones that must stay dead.

    A vNIC is bound only when its iface-id names a controller port whose binding host is this
    host and whose network we can carry; never by guessing from names or MACs.
    """
    bound: list[Binding] = []
    dead: list[Vnic] = []
    for vnic in vnics:
        port = view.ports.get(vnic.iface_id or "")
        network = view.networks.get(port.network_id) if port else None
        if port is None or network is None or port.host != conf.host or \
                not conf.carries(network):
            dead.append(vnic)
            continue
        bound.append(Binding(vnic, port, network))
    return bound, dead


def assign_local_vlans(lvm: LocalVlanManager, bindings: Iterable[Binding]) -> dict[str, int]:
    """Give each network with a local port a local VLAN; give back the VLANs of the others."""
    wanted = {b.network.id for b in bindings}
    for network_id in list(lvm.items()):
        if network_id not in wanted:
            lvm.release(network_id)
    return {network_id: lvm.allocate(network_id) for network_id in sorted(wanted)}


def _carried(view: CloudView, key: object, *inputs: object) -> object | None:
    """The value the previous view remembered under ``key`` if it was computed from these
    very ``inputs`` (by identity: the view's per-network tuples and its peers' mapping
    are kept from view to view while unchanged); also remembered in this view."""
    old = view.carried(key)
    if isinstance(old, tuple) and len(old) == len(inputs) + 1 and \
            all(a is b for a, b in zip(old, inputs, strict=False)):
        view.remember(key, old)
        return old[-1]  # type: ignore[no-any-return]
    return None


def _remote_ports(conf: AgentConfig, view: CloudView, network_id: str) -> tuple[Port, ...]:
    ports = view.ports_of_network(network_id)
    key = ("remote", network_id)
    known = view.memo(key)
    if isinstance(known, tuple) and known[0] is conf and known[1] is ports:
        return known[2]  # type: ignore[no-any-return]
    carried = _carried(view, key, conf, ports)
    if isinstance(carried, tuple):
        return carried
    remote = tuple(p for p in ports if p.host and p.host != conf.host)
    view.remember(key, (conf, ports, remote))
    return remote


def _usable(conf: AgentConfig, peer: Peer, network_type: str) -> bool:
    """A registered peer that speaks the kind. Whether the controller counts its agent alive
    does not matter: a dead agent is not a dead datapath (its switch forwards on without it,
    and a restarting agent that waits for a slow controller sends no heartbeat meanwhile),
    so its tunnels stay; a datapath that stopped answering is BFD's to take out of the flood
    lists (liveness.py), and an agent record deleted takes its tunnels away. As Neutron keeps
    its tunnel endpoints whatever the agents' liveness."""
    return (peer.host != conf.host and peer.tunnel_ip != conf.tunnel_ip
            and network_type in peer.tunnel_types and network_type in conf.tunnel_types)


def _usable_peers(conf: AgentConfig, view: CloudView, network_type: str) -> dict[str, str]:
    """host -> tunnel IP of the peers that speak this tunnel type; not to be changed (it is
    shared by the plans of this view and of the next ones while the peers are the same)."""
    # asked once per local network with the same answer: computed once per view and config
    # (a full mesh of 1,000 hosts would otherwise scan every peer for every network)
    key = ("usable_peers", network_type)
    cached = view.memo(key)
    if isinstance(cached, tuple) and cached[0] is conf:
        return cached[2]  # type: ignore[no-any-return]
    found = _carried(view, key, conf, view.peers)
    if isinstance(found, dict):
        return found
    peers = {p.host: p.tunnel_ip for p in view.peers.values() if _usable(conf, p, network_type)}
    view.remember(key, (conf, view.peers, peers))
    return peers


def _peer_hosts(conf: AgentConfig, view: CloudView, network: Network) -> dict[str, str]:
    """``peer_hosts_for_network``, shared: not to be changed."""
    if not conf.l2pop:
        return _usable_peers(conf, view, network.network_type)
    # asked by plan_tunnels and br_tun_flows alike: once per view, network and config, and
    # taken from the previous view while the network's ports and the peers are the same
    key = ("peer_hosts", network)
    ports = view.ports_of_network(network.id)
    cached = view.memo(key)
    if isinstance(cached, tuple) and cached[0] is conf and cached[1] is ports:
        return cached[3]  # type: ignore[no-any-return]
    old = view.carried(key)
    changed = view.peers_changed()
    # the previous view's answer holds while the network's ports are the very same and no
    # host on it has a new peer record (a filling cloud brings a peer record with nearly
    # every port: the whole mapping is seldom the same)
    if isinstance(old, tuple) and old[0] is conf and old[1] is ports and changed is not None \
            and old[4].isdisjoint(changed):
        view.remember(key, (conf, ports, view.peers, old[3], old[4]))
        return old[3]  # type: ignore[no-any-return]
    found: dict[str, str] = {}
    hosts = frozenset(p.host for p in _remote_ports(conf, view, network.id))
    for host in hosts:
        for peer in view.peers_on_host(host):
            if _usable(conf, peer, network.network_type):
                found[host] = peer.tunnel_ip
    view.remember(key, (conf, ports, view.peers, found, hosts))
    return found


def peer_hosts_for_network(conf: AgentConfig, view: CloudView, network: Network
                           ) -> dict[str, str]:
    """The peers a network's flood list reaches: all of them, or with l2pop only those that
    have a port on the network."""
    return dict(_peer_hosts(conf, view, network))


def plan_tunnels(conf: AgentConfig, view: CloudView, local_networks: Iterable[Network]
                 ) -> list[TunnelPort]:
    """Full mesh to every live peer without l2pop; with l2pop, only towards peers that share
    a network with a local port."""
    if conf.l2pop:
        sources = [(network.network_type, _peer_hosts(conf, view, network))
                   for network in local_networks]
    else:
        sources = [(network_type, _usable_peers(conf, view, network_type))
                   for network_type in sorted(conf.tunnel_types & set(tunnel_kinds.names()))]
    # the same peers as the last plan's (by identity): the same tunnels
    key = ("tunnels",)
    known = view.memo(key) or view.carried(key)
    if isinstance(known, tuple) and known[0] is conf and len(known[1]) == len(sources) and \
            all(a[0] == b[0] and a[1] is b[1] for a, b in zip(known[1], sources, strict=True)):
        view.remember(key, known)
        return list(known[2])
    tunnels: dict[str, TunnelPort] = {}
    for network_type, peers in sources:
        for ip in peers.values():
            name = _tunnel_name(network_type, ip)
            tunnels[name] = TunnelPort(name, network_type, ip)
    planned = sorted(tunnels.values(), key=lambda t: t.name)
    view.remember(key, (conf, sources, planned))
    return list(planned)


def protected(port: Port) -> bool:
    """Neutron's rule: port security on, and not a port the cloud itself owns (DHCP)."""
    return port.port_security and not port.device_owner.startswith(
        br_int.NETWORK_OWNER_PREFIX)


def owned_addresses(port: Port) -> br_int.Owned:
    return br_int.Owned(port.mac, port.ips, tuple((p.ip, p.mac) for p in port.address_pairs))


def br_int_flows(dead: Iterable[Vnic], bound: Iterable[Binding] = ()) -> list[FlowMod]:
    """br-int's defaults, a drop per dead vNIC, port security per protected bound vNIC."""
    groups = _br_int_groups(dead, bound, None)
    return [flow for flows in groups.values() for flow in flows]


@dataclass(slots=True)
class IntFlowMemo:
    """br-int's groups as last planned: each protected vNIC's spoofing protection by (port
    number, addresses), each dead vNIC's drop by port number, and the bridge's own flows."""

    vnics: dict[tuple[int, br_int.Owned], list[FlowMod]] = field(default_factory=dict)
    dead: dict[int, list[FlowMod]] = field(default_factory=dict)
    base: list[FlowMod] = field(default_factory=br_int.default_flows)


INT_BASE_GROUP = ("br-int",)  # br-int's own flows
INT_PROVIDER_GROUP = ("br-int", "provider")


def _br_int_groups(dead: Iterable[Vnic], bound: Iterable[Binding],
                   memo: IntFlowMemo | None) -> dict[Hashable, list[FlowMod]]:
    # without a memo, new lists; with one, the lists of the last plan where still right
    memo_in = memo if memo is not None else IntFlowMemo()
    groups: dict[Hashable, list[FlowMod]] = {INT_BASE_GROUP: memo_in.base}
    drops: dict[int, list[FlowMod]] = {}
    for vnic in dead:
        flows = memo_in.dead.get(vnic.ofport)
        drops[vnic.ofport] = flows if flows is not None else [br_int.dead_port(vnic.ofport)]
        groups[("dead", vnic.ofport)] = drops[vnic.ofport]
    kept: dict[tuple[int, br_int.Owned], list[FlowMod]] = {}
    for binding in sorted(bound, key=lambda b: b.vnic.ofport):
        if not protected(binding.port):
            continue
        key = (binding.vnic.ofport, owned_addresses(binding.port))
        flows = memo_in.vnics.get(key)
        if flows is None:
            flows = br_int.port_security(*key)
        kept[key] = flows
        groups[("vnic", binding.vnic.ofport)] = flows
    if memo is not None:
        memo.vnics, memo.dead = kept, drops
    return groups


def int_bridge_flow_groups(dead: Iterable[Vnic], bound: Iterable[Binding],
                           provider: ProviderFlows, memo: IntFlowMemo | None = None
                           ) -> dict[Hashable, list[FlowMod]]:
    """``int_bridge_flows`` in groups for ``FlowApplier.apply_groups``: br-int's own flows,
    one group per dead vNIC and per protected vNIC (with ``memo``, kept by the caller, the
    very list of the last plan while its port number and addresses are the same), and the
    provider translations."""
    groups = _br_int_groups(dead, bound, memo)
    groups[INT_PROVIDER_GROUP] = provider.int_flows
    return groups


@dataclass(frozen=True, slots=True)
class ProviderFlows:
    """What VLAN and flat networks need: flows on br-int, and each physical bridge's set."""

    int_flows: list[FlowMod]
    bridges: dict[str, list[FlowMod]]


def provider_flows(conf: AgentConfig, bindings: Iterable[Binding],
                   local_vlans: Mapping[str, int], int_ports: Iterable[SwitchPort],
                   phys_ports: Mapping[str, Iterable[SwitchPort]]) -> ProviderFlows:
    """Flows of the patch pairs between br-int and each mapped physical bridge; a bridge whose
    patch ports are not both there yet gets none (the agent makes them first)."""
    int_ofports = {p.name: p.ofport for p in int_ports}
    bound = list(bindings)
    int_flows: list[FlowMod] = []
    bridges: dict[str, list[FlowMod]] = {}
    for physnet, bridge in sorted(conf.bridge_mappings.items()):
        int_patch = int_ofports.get(br_phys.int_patch_name(bridge))
        phy_patch = next((p.ofport for p in phys_ports.get(bridge, ())
                          if p.name == br_phys.phy_patch_name(bridge)), None)
        if int_patch is None or phy_patch is None:
            continue
        nets = {b.network.id: b.network for b in bound
                if b.network.physical_network == physnet
                and b.network.network_type in ("vlan", "flat")}
        phys = br_phys.phys_default_flows(phy_patch)
        int_flows += br_phys.int_default_flows(int_patch)
        for net in nets.values():
            vid = local_vlans[net.id]
            phys.append(br_phys.outbound(phy_patch, vid, net.network_type, net.segment))
            int_flows.append(br_phys.inbound(int_patch, vid, net.network_type, net.segment))
        bridges[bridge] = phys
    return ProviderFlows(int_flows, bridges)


def int_bridge_flows(dead: Iterable[Vnic], bound: Iterable[Binding],
                     provider: ProviderFlows) -> list[FlowMod]:
    """The whole of br-int: its own flows, the dead ports' drops, the bound ports' spoofing
    protection, the provider translations."""
    groups = int_bridge_flow_groups(dead, bound, provider)
    return [flow for flows in groups.values() for flow in flows]


def port_tags(bindings: Iterable[Binding], dead: Iterable[Vnic],
              local_vlans: Mapping[str, int]) -> dict[str, int]:
    tags = {b.vnic.name: local_vlans[b.network.id] for b in bindings}
    tags.update({v.name: DEAD_VLAN for v in dead})
    return tags


@functools.lru_cache(maxsize=4096)
def _kind_of_port(name: str) -> str | None:
    """The tunnel kind whose port names start like ``name`` ("vxlan-c0000202" -> "vxlan")."""
    prefix = name.partition("-")[0]
    return next((k.name for k in tunnel_kinds.all_kinds() if k.port_prefix == prefix), None)


# a network's br-tun flows: what they were planned from, those flows, and its l2pop
# entries by (tunnel ofport, MAC)
NetworkFlows = tuple[tuple[object, ...], list[FlowMod], dict[tuple[int, str], FlowMod]]
BASE_GROUP = ("br-tun",)  # the group of br-tun's own flows and its tunnel ports'


@dataclass(slots=True)
class NetworkFlowMemo:
    """br-tun's flows as last planned, and from what: per network id, and br-tun's own."""

    networks: dict[str, NetworkFlows] = field(default_factory=dict)
    # per network id: the objects its flows were last planned from, to know them again by
    # identity (see br_tun_flow_groups)
    quick: dict[str, tuple[object, ...]] = field(default_factory=dict)
    base: tuple[tuple[object, ...], dict[str, int], list[FlowMod]] | None = None


def br_tun_flows(conf: AgentConfig, view: CloudView, *, cookie: int, patch_int_ofport: int,
                 local_networks: Iterable[Network], local_vlans: Mapping[str, int],
                 tunnel_ofports: Mapping[str, int],
                 down_tunnels: frozenset[str] = frozenset(),
                 memo: NetworkFlowMemo | None = None) -> list[FlowMod]:
    """The whole of br-tun for this state, as one list (see ``br_tun_flow_groups``)."""
    groups = br_tun_flow_groups(conf, view, cookie=cookie, patch_int_ofport=patch_int_ofport,
                                local_networks=local_networks, local_vlans=local_vlans,
                                tunnel_ofports=tunnel_ofports, down_tunnels=down_tunnels,
                                memo=memo)
    return [flow for flows in groups.values() for flow in flows]


def br_tun_flow_groups(conf: AgentConfig, view: CloudView, *, cookie: int,
                       patch_int_ofport: int, local_networks: Iterable[Network],
                       local_vlans: Mapping[str, int], tunnel_ofports: Mapping[str, int],
                       down_tunnels: frozenset[str] = frozenset(),
                       memo: NetworkFlowMemo | None = None
                       ) -> dict[Hashable, list[FlowMod]]:
    """The whole of br-tun for this state, in groups: ``BASE_GROUP`` (the bridge's own
    flows and its tunnel ports'), then one per tunnel network by local VLAN, keyed by the
    network's id. Tunnels without an ofport yet are left out, and ``down_tunnels`` (by port
    name: their BFD session went down, agent/liveness.py) are left out of the flood lists.

    ``memo``, kept by the caller from one plan to the next: a group whose inputs are the
    same as last time (the same port records of the view, the same tunnels) is the very
    list planned then, which the applier takes as unchanged without reading it
    (``FlowApplier.apply_groups``). While a cloud fills, every event re-plans an agent's
    whole br-tun, and the networks the event did not touch were most of that work (a
    hundred l2pop entries each)."""
    groups: dict[Hashable, list[FlowMod]] = {
        BASE_GROUP: _base_tun_flows(conf, cookie, patch_int_ofport, tunnel_ofports, memo)}
    planned: set[str] = set()  # networks planned: the memo forgets the others
    for network in sorted(local_networks, key=lambda n: local_vlans[n.id]):
        planned.add(network.id)
        # VLAN and flat networks leave through their physical bridge, never a tunnel
        if network.segment is None or not tunnel_kinds.is_tunnel(network.network_type):
            continue
        vid = local_vlans[network.id]
        peers = _peer_hosts(conf, view, network)
        remote = _remote_ports(conf, view, network.id)
        # the very peers, ports and tunnel numbers of the last plan (objects kept while
        # unchanged): the same flows, known without a look at any of them
        quick = (conf, network, vid, patch_int_ofport, peers, remote, tunnel_ofports,
                 down_tunnels)
        known = memo.networks.get(network.id) if memo is not None else None
        last_quick = memo.quick.get(network.id) if memo is not None else None
        if known is not None and last_quick is not None and \
                all(a is b or (i < 4 and a == b) or (i == 7 and a == b)
                    for i, (a, b) in enumerate(zip(last_quick, quick, strict=True))):
            groups[network.id] = known[1]
            continue
        by_host = {host: tunnel_ofports.get(_tunnel_name(network.network_type, ip))
                   for host, ip in peers.items()}
        live = {host: ofport for host, ofport in by_host.items() if ofport is not None
                and _tunnel_name(network.network_type, peers[host]) not in down_tunnels}
        # the view's port records are kept from view to view while unchanged: comparing
        # them is mostly comparing identities
        inputs = (conf, network, vid, patch_int_ofport, by_host, live, remote)
        if memo is not None:
            memo.quick[network.id] = quick
        if known is not None and known[0] == inputs:
            groups[network.id] = known[1]
            continue
        # a network's l2pop entries that are still wanted are kept, not made again: the
        # same VLAN and segment make the same entry for the same tunnel and MAC
        before = known[2] if known is not None and known[0][1:3] == inputs[1:3] else {}
        unicast: dict[tuple[int, str], FlowMod] = {}
        flows: list[FlowMod] = []
        _network_tun_flows(conf, network, network.segment, vid, patch_int_ofport, by_host,
                           sorted(live.values()), remote, flows, before, unicast)
        groups[network.id] = flows
        if memo is not None:
            memo.networks[network.id] = (inputs, flows, unicast)
    if memo is not None:
        for gone in set(memo.networks) - planned:
            del memo.networks[gone]
        for gone in set(memo.quick) - planned:
            del memo.quick[gone]
    return groups


def _base_tun_flows(conf: AgentConfig, cookie: int, patch_int_ofport: int,
                    tunnel_ofports: Mapping[str, int], memo: NetworkFlowMemo | None
                    ) -> list[FlowMod]:
    """br-tun's own flows and one per tunnel port: the list of the last plan while its
    inputs are the same (a full mesh is a flow per peer)."""
    inputs = (conf.arp_responder and conf.l2pop, cookie, patch_int_ofport)
    if memo is not None and memo.base is not None and memo.base[0] == inputs and \
            memo.base[1] == tunnel_ofports:
        return memo.base[2]
    flows = br_tun.default_flows(patch_int_ofport, cookie=cookie,
                                 arp_responder=conf.arp_responder and conf.l2pop)
    for name, ofport in sorted(tunnel_ofports.items()):
        kind = _kind_of_port(name)
        if kind is not None:
            flows.append(br_tun.tunnel_port(kind, ofport))
    if memo is not None:
        memo.base = (inputs, dict(tunnel_ofports), flows)
    return flows


def _network_tun_flows(conf: AgentConfig, network: Network, segment: int, vid: int,
                       patch_int_ofport: int, by_host: Mapping[str, int | None],
                       flood: list[int], remote: Iterable[Port], flows: list[FlowMod],
                       before: Mapping[tuple[int, str], FlowMod],
                       unicast: dict[tuple[int, str], FlowMod]) -> None:
    """One tunnel network's part of br-tun, appended to ``flows``; its l2pop entries also go
    to ``unicast``, taken from ``before`` when there."""
    flows.append(br_tun.local_vlan(network.network_type, vid, segment))
    if conf.mtu_doctor and network.mtu is not None:
        flows.append(br_tun.mtu_check(patch_int_ofport, vid, network.mtu))
        flows.append(br_tun.too_big(vid, network.mtu))
    flood_flow = _flood_to_tunnels(vid, segment, tuple(flood))
    if flood_flow is not None:
        flows.append(flood_flow)
    if not conf.l2pop:
        return
    for port in sorted(remote, key=lambda p: p.mac):
        tunnel = by_host.get(port.host)
        if tunnel is None or not port.mac:
            continue
        key = (tunnel, port.mac)
        entry = before.get(key)
        if entry is None:
            entry = br_tun.unicast_to_tunnel(vid, segment, tunnel, port.mac)
        unicast[key] = entry
        flows.append(entry)
        if conf.arp_responder:
            flows.extend(br_tun.arp_responder(vid, ip, port.mac)
                         for ip in port.ips if ":" not in ip)
