"""The agent's view of the cloud: what the controller says and what this host's switch holds.

Plain frozen records, filled from the controller's Neutron-shaped JSON by ``from_api`` helpers,
so that the desired-state computation is a pure function of values.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelnet.packet import tunnel_kinds

TUNNEL_NETWORK_TYPES = frozenset(tunnel_kinds.names())
# what an agent speaks unless told otherwise (Neutron's own default is none at all)
DEFAULT_TUNNEL_TYPES = ("vxlan", "gre")


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    network_type: str
    segment: int | None
    physical_network: str | None = None
    mtu: int | None = None  # the IP MTU the cloud gives the network's VMs

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Network:
        seg = obj.get("provider:segmentation_id")
        mtu = obj.get("mtu")
        return cls(id=str(obj["id"]), network_type=str(obj.get("provider:network_type") or ""),
                   segment=int(seg) if seg is not None else None,
                   physical_network=obj.get("provider:physical_network"),
                   mtu=mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else None)


@dataclass(frozen=True, slots=True)
class AddressPair:
    """One of a port's allowed_address_pairs: an address or CIDR it may also send from, with
    the MAC it may use for it (the port's own unless the pair names one)."""

    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class Port:
    id: str
    network_id: str
    mac: str
    ips: tuple[str, ...] = ()
    host: str = ""
    status: str = "DOWN"
    # Neutron's default: a port is protected against spoofing unless told otherwise
    port_security: bool = True
    address_pairs: tuple[AddressPair, ...] = ()
    device_owner: str = ""

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Port:
        # an agent reads every port of each network it comes onto (thousands while a cloud
        # fills): lists, not generators, into the tuples, and no pairs work when there are none
        get = obj.get
        fixed = get("fixed_ips")
        ips = tuple([str(f["ip_address"]) for f in fixed if f.get("ip_address")]
                    ) if fixed else ()
        mac = str(get("mac_address") or "").lower()
        listed = get("allowed_address_pairs")
        pairs = tuple([AddressPair(str(p["ip_address"]), str(p.get("mac_address") or mac).lower())
                       for p in listed if p.get("ip_address")]) if listed else ()
        return cls(id=str(obj["id"]), network_id=str(obj["network_id"]), mac=mac, ips=ips,
                   host=str(get("binding:host_id") or ""), status=str(get("status") or "DOWN"),
                   port_security=get("port_security_enabled") is not False,
                   address_pairs=pairs, device_owner=str(get("device_owner") or ""))


@dataclass(frozen=True, slots=True)
class Peer:
    host: str
    tunnel_ip: str
    tunnel_types: frozenset[str]
    alive: bool = True

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> Peer | None:
        """None for an agent that reports no tunnel IP (it cannot be a tunnel peer)."""
        conf = obj.get("configurations") or {}
        ip = obj.get("tunnel_ip") or conf.get("tunneling_ip")
        if not ip:
            return None
        types = obj.get("tunnel_types") or conf.get("tunnel_types") or ()
        return cls(host=str(obj["host"]), tunnel_ip=str(ip),
                   tunnel_types=frozenset(str(t) for t in types),
                   alive=bool(obj.get("alive", True)))


@dataclass(frozen=True, slots=True)
class Vnic:
    """A VM interface plugged into br-int, named by the controller port it belongs to."""

    name: str
    ofport: int
    iface_id: str | None
    attached_mac: str | None = None


@dataclass(frozen=True, slots=True)
class CloudView:
    networks: Mapping[str, Network] = field(default_factory=dict)
    ports: Mapping[str, Port] = field(default_factory=dict)
    peers: Mapping[str, Peer] = field(default_factory=dict)
    # Indexes built on first use and kept with this (immutable) view: planning asks "ports
    # of network N" and "peer on host H" once per local network, which as scans cost
    # O(all ports) each and made a 1,000-hypervisor cloud quadratic.
    _by_network: dict[str, tuple[Port, ...]] = field(default_factory=dict, init=False,
                                                     repr=False, compare=False)
    _by_host: dict[str, tuple[Peer, ...]] = field(default_factory=dict, init=False,
                                                  repr=False, compare=False)
    _built: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    _memo: dict[object, object] = field(default_factory=dict, init=False, repr=False,
                                        compare=False)
    # the previous view's per-network tuples and memo (``follow``): a network whose ports
    # are the same gets the very tuple of before, so what was computed from it (kept by
    # identity, ``carried``) is reused instead of computed for every network each change
    _carried: dict[str, dict[Any, Any]] = field(default_factory=dict, init=False, repr=False,
                                                compare=False)

    def follow(self, previous: CloudView) -> None:
        """Take over what ``previous`` (the view this one replaces) worked out, where still
        right. Only its containers are kept, never the view: no chain of views."""
        self._carried["by_network"] = previous._by_network
        self._carried["memo"] = previous._memo
        before, now = previous.peers, self.peers
        # the hosts whose peer record differs from the previous view's (a new record equal
        # to the old one is no change)
        self._carried["peers_changed"] = {} if before is now else {
            host: True for host in before.keys() | now.keys()
            if (old := before.get(host)) is not (new := now.get(host)) and old != new}

    def peers_changed(self) -> Mapping[str, bool] | None:
        """The hosts whose peer record is not that of the view this one follows (None: it
        follows none)."""
        return self._carried.get("peers_changed")

    def ports_of_network(self, network_id: str) -> tuple[Port, ...]:
        """The ports on a network, in the order of ``ports``."""
        if "ports" not in self._built:
            grouped: dict[str, list[Port]] = {}
            for port in self.ports.values():
                grouped.setdefault(port.network_id, []).append(port)
            before = self._carried.pop("by_network", {})
            for network, ports in grouped.items():
                now = tuple(ports)
                kept = before.get(network)
                # the very same records (a listing makes equal ones anew: those get the new
                # tuple, once, rather than an element-wise comparison in every view after)
                same = kept is not None and len(kept) == len(now) and \
                    all(map(operator.is_, kept, now))
                self._by_network[network] = kept if same and kept is not None else now
            self._built.add("ports")
        return self._by_network.get(network_id, ())

    def peers_on_host(self, host: str) -> tuple[Peer, ...]:
        """The peers whose agent runs on ``host`` (normally one)."""
        if "peers" not in self._built:
            grouped: dict[str, list[Peer]] = {}
            for peer in self.peers.values():
                grouped.setdefault(peer.host, []).append(peer)
            self._by_host.update((k, tuple(v)) for k, v in grouped.items())
            self._built.add("peers")
        return self._by_host.get(host, ())

    def memo(self, key: object) -> object | None:
        """A value computed from this view and kept with it (see ``remember``)."""
        return self._memo.get(key)

    def remember(self, key: object, value: object) -> None:
        self._memo[key] = value

    def carried(self, key: object) -> object | None:
        """What the previous view remembered under ``key`` (see ``follow``): the caller
        checks it was computed from what it would compute it from now."""
        return self._carried.get("memo", {}).get(key)
