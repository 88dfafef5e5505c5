"""vswitchd's kernel fast path: the plans the kernel can replay, mirrored into its maps.

Python keeps deciding (fastpath.py's plans); this module copies each plan the kernel can
replay exactly (kernel_replayable.py) into the BPF maps of kernel_fastpath.py, and keeps the
copy honest:

- **An entry exists only while its plan holds.** After every round of the event loop and
  before every control request is answered, a change of any bridge's version (a flow added,
  changed or deleted, an expiry) removes every entry through that bridge; what learning
  changed (a new or moved MAC, a learned flow: switch/changes.py) removes the entries whose
  plan depended on it; the passing of a plan's ``valid_until`` (MAC aging) removes every entry
  whose plan no longer holds. The next frame of that flow then goes up to Python, which walks
  the tables and may make a new plan.
  A control request that changes the tables is answered only after that check, so a flow
  deleted by hand stops the kernel before the caller hears back.
- **Counters are folded back.** The kernel counts each entry's packets, bytes and last use;
  ``fold`` replays the packets it has not yet replayed through the plan (flow counters and
  ``used``, table lookups, MAC learning refresh, learned-flow refresh), at the kernel's last
  use time, as the Python path would have, and adds them to the ports' statistics. It runs
  before every control request, before housekeeping (timeouts, MAC aging) and when an entry
  is removed, so dump-flows, idle timeouts and MAC aging see what they would without it.

Tunnel frames without an entry reach Python through the upcall reader (kernel_upcall.py): the
collect_md VXLAN device owns UDP 4789, so the Python path does not listen there in this mode.

GRE (no GRE module here) and VXLAN, when its route is known, are written and read by the
programs themselves, from maps of their own (encap_port_plans, encap_tunnel_plans): a VM
port's frames into a GRE or VXLAN port carry the port's route (device and our address towards
the peer, read here once per port and again when routes are refreshed); GRE or VXLAN
arriving on that device for a plan's key and peer goes straight to the VM port, anything else
on to the Python path's raw socket as before.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from pyroute2 import IPRoute

from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.fastpath import Plan
from tunnelnet.datapath.kernel_fastpath import (
    UNDERLAY_PRIORITY,
    VXLAN_PORT,
    KernelFastPath,
    ensure_vxlan_device,
)
from tunnelnet.datapath.kernel_loader import KernelFastPathUnavailable
from tunnelnet.datapath.kernel_maps import (
    GRE_KEY_MAX,
    VNI_MAX,
    EncapKind,
    EncapPortPlan,
    EncapStat,
    EncapTunnelPlan,
    EntryCounters,
    Inner,
    PortPlan,
    Stat,
    TunnelPlan,
    UnderlayStat,
)
from tunnelnet.datapath.kernel_replayable import inner_of, why_not
from tunnelnet.datapath.kernel_upcall import DatagramReader, UpcallReader
from tunnelnet.datapath.ports import Port, PortKind
from tunnelnet.datapath.tunnel import TunnelPort
from tunnelnet.datapath.walk_meter import DEFAULT_BURST as WALK_BURST
from tunnelnet.datapath.walk_meter import DEFAULT_RATE as WALK_RATE
from tunnelnet.packet.fields import FlowKey

log = logging.getLogger(__name__)

DEVICE_NAME: Final = "tnfp-vxlan"  # the collect_md VXLAN device vswitchd makes
OWNER_ALIAS: Final = "tunnelnet vswitchd pid "  # its alias: whose it is
MAX_MIRRORED: Final = 16384  # entries; beyond, plans stay in Python (the maps hold 65536)
# The port meter (replay.bpf.c): frames without an entry a VM port may hand Python a second.
# Ten times the walk meter's rate (walk_meter.py), so that it keeps back only what that meter
# would mostly drop anyway, after Python had read and parsed it on the thread every port
# shares: 68,000 random-MAC frames/s from one VM kept that thread busy (issue 21).
DEFAULT_PORT_METER_RATE: Final = 10 * WALK_RATE
DEFAULT_PORT_METER_BURST: Final = 10 * WALK_BURST
_NS_PER_S: Final = 1e9  # a division, not a product with 1e-9: whole seconds stay whole


@dataclass(frozen=True, slots=True)
class GreRoute:
    """How GRE to one peer leaves: the device, our address on it (the outer source the Python
    path's raw socket gets), and for frames that are not IP (which the kernel's helper that
    fills in the neighbour cannot take) the next hop's MAC and the device's, when known."""

    ifindex: int
    local_ip: str
    next_hop_mac: str | None
    uplink_mac: str | None
    ttl: int = 64  # net.ipv4.ip_default_ttl here: the raw socket's TTL


def gre_route(remote_ip: str, local: int) -> GreRoute | None:
    """The route to ``remote_ip`` from the routing and neighbour tables of this namespace."""
    try:
        with IPRoute() as ipr:
            found = ipr.route("get", dst=remote_ip)
            oif = found[0].get_attr("RTA_OIF") if found else None
            if not oif:
                return None
            hop = found[0].get_attr("RTA_GATEWAY") or remote_ip
            link = ipr.get_links(int(oif))[0]
            neighbours = ipr.get_neighbours(dst=hop, ifindex=int(oif))
    except OSError as exc:
        log.debug("no route towards %s: %s", remote_ip, exc)
        return None
    # a usable entry (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP): the stack would send
    # to that address too; an INCOMPLETE or FAILED one has none
    usable = [n.get_attr("NDA_LLADDR") for n in neighbours
              if n["state"] & (0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80)]
    return GreRoute(int(oif), str(ipaddress.IPv4Address(local)),
                    usable[0] if usable and usable[0] else None,
                    link.get_attr("IFLA_ADDRESS"), _default_ttl())


def _default_ttl() -> int:
    """The TTL the Python path's raw GRE socket sends with (it sets none of its own)."""
    try:
        ttl = int(Path("/proc/sys/net/ipv4/ip_default_ttl").read_text())
    except (OSError, ValueError):
        return 64
    return ttl if 1 <= ttl <= 255 else 64


@runtime_checkable
class KernelPort(Protocol):
    """A port the kernel takes frames from (a SystemPort): its interface and its socket."""

    name: str
    ifindex: int

    def untagged_socket(self) -> tuple[socket.socket, bool]: ...


@dataclass(slots=True)
class Mirrored:
    """One kernel entry and the plan it replays."""

    plan: Plan
    ingress: Port
    egress: Port
    tunnel: bool  # a tunnel_plans entry (else port_plans)
    ifindex_or_vni: int
    remote_ip: str  # tunnel entries: the peer
    inner: Inner
    max_frame_len: int = 0  # into a tunnel: its max_inner when installed
    folded_packets: int = 0
    folded_bytes: int = 0
    # in the maps of the tunnels the programs write (encap_port_plans, encap_tunnel_plans)
    encap: EncapKind | None = None
    plain: bool = True  # in port_plans or tunnel_plans (VXLAN arrivals: beside encap's)
    route: GreRoute | None = None  # encap: the route it was installed for

    @property
    def gre(self) -> bool:
        return self.encap is EncapKind.GRE

    @property
    def ident(self) -> tuple[bool, bool, int, str, Inner]:
        return (self.tunnel, self.gre and self.tunnel, self.ifindex_or_vni, self.remote_ip,
                self.inner)


class KernelMirror:
    """The loaded programs, the VXLAN device, and the entries mirrored from plans."""

    def __init__(self, fastpath: KernelFastPath, device_ifindex: int, device_made: bool,
                 upcalls: UpcallReader | None = None) -> None:
        self.fastpath = fastpath
        self.device_ifindex = device_ifindex
        self._device_made = device_made
        self.upcalls = upcalls if upcalls is not None else UpcallReader(fastpath)
        # VXLAN the device would drop unseen, handed up whole by underlay_ingress
        self.datagrams: DatagramReader | None = None
        self._underlay: dict[int, str] = {}  # interfaces underlay_ingress is on: ifindex -> name
        # (tunnel, GRE arrival, port ifindex or VNI/key, peer, inner): a VM port's frames have
        # one entry whichever map it is in (the kernel looks in port_plans, then GRE's)
        self._entries: dict[tuple[bool, bool, int, str, Inner], Mirrored] = {}
        self._routes: dict[str, GreRoute | None] = {}  # by GRE port name
        self._ports: dict[str, int] = {}  # attached VM ports: name -> ifindex
        self._waiting: dict[str, KernelPort] = {}  # ports to attach at the take-over
        self._versions: tuple[int, ...] = ()
        self._valid_until = math.inf
        self.installed = 0  # entries ever installed
        self.removed = 0
        self.upcalls_read = 0
        self.refusals: dict[str, int] = {}  # why plans stayed in Python, by reason
        # settles the packets that followed deferred plans until a time (the switchboard's
        # Forwarder.settle_until): what they did comes before what the kernel did after them
        self.settle_until: Callable[[float], None] = lambda until: None
        self.port_meter = (0.0, 0.0)  # the maps start without one: start() sets it

    def set_port_meter(self, rate: float, burst: float = DEFAULT_PORT_METER_BURST) -> None:
        """Each VM port may hand Python at most ``rate`` frames without an entry a second,
        in bursts of ``burst`` (``rate`` 0: no meter)."""
        self.fastpath.set_port_meter(rate, burst)
        self.port_meter = (rate, burst)

    @classmethod
    def start(cls, *, take_over_later: bool = False) -> KernelMirror:
        """Load and make the device; raises ``KernelFastPathUnavailable`` saying why not.

        ``take_over_later``: a daemon restarted with its configuration kept loads its programs
        now and takes the kernel over (``take_over``) only once its ports and flows are back.
        Until then a killed daemon's filters go on replaying its plans, as they did while it
        was dead: the flows they were made from are the ones being restored (the restored
        daemon's own plans replace them within a round of its loop), and no port or flow can
        change meanwhile, since nothing answers on the control socket yet."""
        # loaded before a killed daemon's device is taken back: its plans keep replaying
        fastpath = KernelFastPath.load()
        try:
            if take_over_later:
                stale_device_check()  # another live daemon's device: refused now, as ever
            mirror = cls(fastpath, 0, False)
        except KernelFastPathUnavailable:
            fastpath.close()
            raise
        try:
            mirror.set_port_meter(DEFAULT_PORT_METER_RATE, DEFAULT_PORT_METER_BURST)
            mirror.datagrams = DatagramReader(fastpath)
            if not take_over_later:
                mirror.take_over()
        except (KernelFastPathUnavailable, OSError):
            mirror.close()
            raise
        return mirror

    @property
    def live(self) -> bool:
        """Whether this daemon's programs are the ones on the device and the ports."""
        return self.device_ifindex != 0

    def take_over(self) -> None:
        """Take the device back from a killed daemon (or make it), attach the programs to it,
        the underlay and every port added meanwhile; raises ``KernelFastPathUnavailable``."""
        if self.live:
            return
        if not adopt_stale_device():
            take_back_stale_device()
        try:
            ifindex = self.device_ifindex = ensure_vxlan_device(DEVICE_NAME, VXLAN_PORT)
            self._device_made = True
            with IPRoute() as ipr:  # whose it is, for a daemon started after this one dies
                ipr.link("set", index=ifindex, ifalias=f"{OWNER_ALIAS}{os.getpid()}")
            self.fastpath.attach_tunnel_device(ifindex)
        except (DatapathError, OSError) as exc:
            raise KernelFastPathUnavailable(f"cannot set up {DEVICE_NAME}: {exc}") from exc
        for index in self.watch_underlay():
            try:
                self.fastpath.remove_stale_gre_uplink(index)
            except KernelFastPathUnavailable as exc:
                log.warning("cannot remove a killed vswitchd's GRE filter from ifindex %d: %s",
                            index, exc)
        waiting, self._waiting = self._waiting, {}
        drained = 0
        for port in waiting.values():
            self._attach_now(port)
            drained += _drain(port.untagged_socket()[0])
        if waiting:
            # what the killed daemon's filters took meanwhile went its way (or nowhere): a
            # copy left in our sockets would be forwarded twice, late
            log.info("kernel taken over on %d ports; %d frames that arrived before dropped",
                     len(waiting), drained)

    # the underlay -----------------------------------------------------------------------

    def watch_underlay(self) -> list[int]:
        """Put underlay_ingress on every interface of the namespace that holds an IPv4
        address (where datagrams to this host arrive), loopback, our device and VM ports
        aside, and tell it the local addresses; again after interfaces or addresses change
        (vswitchd calls it with the route refresh). Returns those interfaces."""
        with IPRoute() as ipr:
            holders: dict[int, str] = {}
            local: set[str] = set()
            names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME"))
                     for link in ipr.get_links()}
            for addr in ipr.get_addr(family=socket.AF_INET):
                local.add(str(addr.get_attr("IFA_ADDRESS")))
                index = int(addr["index"])
                if names.get(index, "lo") != "lo" and index != self.device_ifindex:
                    holders[index] = names[index]
        self.fastpath.set_local_addresses(local)
        ours = set(self._ports.values())
        for index, name in holders.items():
            if index in ours or self._underlay.get(index) == name:
                continue
            try:
                self.fastpath.attach_underlay(index)
            except KernelFastPathUnavailable as exc:
                log.warning("%s: malformed VXLAN arriving there will not reach Python: %s",
                            name, exc)
                continue
            self._underlay[index] = name
            log.info("%s: VXLAN the kernel's device would drop goes up to Python", name)
        for index in [i for i, n in self._underlay.items() if holders.get(i) != n]:
            del self._underlay[index]
            try:
                self.fastpath.detach(index, UNDERLAY_PRIORITY)
            except KernelFastPathUnavailable as exc:  # gone with its interface
                log.debug("detaching underlay_ingress from %s: %s", index, exc)
        return list(holders)

    # ports ----------------------------------------------------------------------------

    def attach(self, port: KernelPort) -> None:
        """Replay plans for frames from ``port`` and hide those frames from its socket (once
        taken over: until then the killed daemon's filter stays on it)."""
        if not self.live:
            self._waiting[port.name] = port
            return
        self._attach_now(port)

    def _attach_now(self, port: KernelPort) -> None:
        ifindex = port.ifindex
        self.fastpath.attach_port(ifindex)
        sock, split = port.untagged_socket()
        try:
            self.fastpath.filter_socket(sock, untagged_only=split)
        except KernelFastPathUnavailable:
            self.fastpath.detach(ifindex)
            raise
        self._ports[port.name] = ifindex

    def detach(self, port: Port) -> None:
        self._waiting.pop(port.name, None)
        ifindex = self._ports.pop(port.name, None)
        if ifindex is None:
            return
        self.fastpath.forget_port_meter(ifindex)
        self.remove_if(lambda m: m.ingress is port or m.egress is port)
        try:
            self.fastpath.detach(ifindex)
        except KernelFastPathUnavailable as exc:  # the interface went first: so did its filter
            log.debug("detaching the fast path from %s: %s", port.name, exc)

    # plans -----------------------------------------------------------------------------

    def offer(self, ingress: Port, key: FlowKey, plan: Plan) -> None:
        """A plan Python has just made for the flow ``key`` arriving on ``ingress``: mirror it
        when the kernel can replay it exactly."""
        reason = self._why_not(ingress, key, plan) if self.live else "not taken over yet"
        if reason is not None:
            self.refusals[reason] = self.refusals.get(reason, 0) + 1
            return
        if len(self._entries) >= MAX_MIRRORED:
            self.refusals["the kernel's table is full"] = self.refusals.get(
                "the kernel's table is full", 0) + 1
            return
        out = plan.outputs[0]
        egress = out.port
        inner = inner_of(key)
        gre_in = isinstance(ingress, TunnelPort) and ingress.kind is PortKind.GRE
        if isinstance(ingress, TunnelPort):
            ident: tuple[bool, bool, int, str, Inner] = (True, gre_in, key["tun_id"],
                                                         ingress.remote_ip, inner)
        else:
            ident = (False, False, self._ports[ingress.name], "", inner)
        old = self._entries.get(ident)
        if old is not None:
            self._fold_one(old, remove=True)
        if isinstance(ingress, TunnelPort):
            self._offer_arrival(plan, ingress, egress, key["tun_id"], inner, gre_in)
        elif isinstance(egress, TunnelPort):
            self._offer_departure(plan, ingress, egress, out.tun_id, inner)
        else:
            self.fastpath.install_port(PortPlan(self._ports[ingress.name], inner, 0, None,
                                                self._ports[egress.name], 65535))
            self._add(Mirrored(plan, ingress, egress, False, ident[2], "", inner))

    def _offer_arrival(self, plan: Plan, ingress: TunnelPort, egress: Port, tun_id: int,
                       inner: Inner, gre: bool) -> None:
        """A tunnel's frames to a VM port. GRE only by gre_uplink_ingress; VXLAN by
        underlay_ingress when its route is known and, beside it, by the collect_md device's
        tunnel_ingress: what underlay_ingress leaves to the stack (a UDP checksum to verify,
        another local address) still replays there."""
        route = self._route(ingress)
        out_ifindex = self._ports[egress.name]
        kind = EncapKind.GRE if gre else EncapKind.VXLAN
        if not gre:
            self.fastpath.install_tunnel(TunnelPlan(tun_id, ingress.remote_ip, inner,
                                                    out_ifindex))
        if route is not None:
            if gre:
                self.fastpath.attach_gre_uplink(route.ifindex)
            self.fastpath.install_encap_tunnel(EncapTunnelPlan(
                tun_id, ingress.remote_ip, route.local_ip, inner, out_ifindex, kind))
        self._add(Mirrored(plan, ingress, egress, True, tun_id, ingress.remote_ip, inner,
                           encap=None if route is None else kind, plain=not gre, route=route))

    def _offer_departure(self, plan: Plan, ingress: Port, egress: TunnelPort, tun_id: int,
                         inner: Inner) -> None:
        """A VM port's frames into a tunnel: written by port_ingress itself when the route is
        known (GRE always is: _why_not saw to it), else (VXLAN) by the collect_md device."""
        route = self._route(egress)
        key = egress.key if egress.key is not None else tun_id
        limit = min(egress.max_inner, 65535)
        in_ifindex = self._ports[ingress.name]
        if route is None:
            self.fastpath.install_port(PortPlan(in_ifindex, inner, key, egress.remote_ip,
                                                self.device_ifindex, limit))
            self._add(Mirrored(plan, ingress, egress, False, in_ifindex, "", inner, limit))
            return
        gre = egress.kind is PortKind.GRE
        if gre:  # its peer answers by the same device: deliver what comes back in the kernel
            self.fastpath.attach_gre_uplink(route.ifindex)
        kind = EncapKind.GRE if gre else EncapKind.VXLAN
        self.fastpath.install_encap_port(EncapPortPlan(
            in_ifindex, inner, key & GRE_KEY_MAX if gre else key, route.local_ip,
            egress.remote_ip, route.ifindex, limit, route.next_hop_mac, route.uplink_mac,
            route.ttl, kind))
        self._add(Mirrored(plan, ingress, egress, False, in_ifindex, "", inner, limit,
                           encap=kind, plain=False, route=route))

    def _add(self, mirrored: Mirrored) -> None:
        plan = mirrored.plan
        self._entries[mirrored.ident] = mirrored
        self.installed += 1
        self._valid_until = min(self._valid_until, plan.valid_until)
        if not self._versions:
            self._versions = self._current_versions()

    def _why_not(self, ingress: Port, key: FlowKey, plan: Plan) -> str | None:
        if not plan.outputs:
            return "no output"
        egress = plan.outputs[0].port
        if isinstance(ingress, TunnelPort):
            gre = ingress.kind is PortKind.GRE
            if not (self._kernel_vxlan(ingress) or gre) or key.get("tun_id") is None:
                return f"arrival by {ingress.kind.value} (only VXLAN on UDP 4789 and GRE)"
            if egress.name not in self._ports:
                return "from a tunnel to anything but a VM port"
            if gre and self._route(ingress) is None:
                return "GRE from a peer without a route"
        elif ingress.name in self._ports:
            if isinstance(egress, TunnelPort):
                key_of = egress.key if egress.key is not None else plan.outputs[0].tun_id
                if egress.kind is PortKind.GRE:  # any key: the Python path masks it so too
                    if self._route(egress) is None:
                        return "GRE to a peer without a route"
                    return why_not(plan, key)
                if not self._kernel_vxlan(egress):
                    return f"into {egress.kind.value} (only VXLAN on UDP 4789 and GRE)"
                if not 0 <= key_of <= VNI_MAX:
                    return "a key wider than a VNI"
            elif egress.name not in self._ports:
                return f"to a {egress.kind.value} port"
        else:
            return f"arrival by a {ingress.kind.value} port"
        return why_not(plan, key)

    def _route(self, port: TunnelPort) -> GreRoute | None:
        """GRE or VXLAN to ``port``'s peer as the routing table sends it, read once per port (and
        again when routes are refreshed); None: no route."""
        if port.name not in self._routes:
            self._routes[port.name] = (gre_route(port.remote_ip, port.tun_dst)
                                           if port.tun_dst else None)
        return self._routes[port.name]

    @staticmethod
    def _kernel_vxlan(port: TunnelPort) -> bool:
        return port.kind is PortKind.VXLAN and port.dst_port == VXLAN_PORT

    def _current_versions(self) -> tuple[int, ...]:
        """Per bridge of the entries' plans: its version and how many narrow changes
        (learning, switch/changes.py) it has made; check() looks closer when either moves."""
        seen: dict[int, tuple[int, int]] = {}
        for mirrored in self._entries.values():
            for cache, _ in mirrored.plan.stages:
                bridge = cache.bridge
                seen[id(bridge)] = (bridge.version, bridge.changes.seq)
        return tuple(sorted(seen.items()))  # type: ignore[arg-type]

    def check(self) -> None:
        """Remove every entry whose plan no longer holds (cheap when nothing changed)."""
        if not self._entries:
            return
        versions = self._current_versions()
        # the bridges' clock, which valid_until is on (the daemon's bridges share one, and
        # it is time.monotonic there; a test's may be another)
        now = next(iter(self._entries.values())).plan.clock()
        if versions == self._versions and now < self._valid_until:
            return
        self.fold()  # MAC refreshes first: what the kernel forwarded keeps them young
        stale = []
        for mirrored in self._entries.values():
            plan = mirrored.plan
            if not plan.in_force(plan.clock()):
                stale.append(mirrored)
        for mirrored in stale:
            self._fold_one(mirrored, remove=True)
        self._versions = self._current_versions()
        self._valid_until = min((m.plan.valid_until for m in self._entries.values()),
                                default=math.inf)

    def before_walk(self) -> None:
        """A walk is about to look MACs up: once a plan's valid_until has passed, a MAC
        that the kernel's packets kept young would look aged out to it (flooded to, or
        learned anew) until this round's check folds them, so fold and check now. Before
        that the kernel's unfolded packets change no answer of a walk: its MACs are known and
        where they were (a late fold does not move them back: MacTable.learn), and counters
        add up in any order."""
        if self._entries and next(iter(self._entries.values())).plan.clock() \
                >= self._valid_until:
            self.check()

    def routes_refreshed(self) -> None:
        """The tunnels' underlay MTUs were read again: an entry whose tunnel now takes
        smaller (or larger) frames goes, so that the next frame meets Python's MTU check."""
        self._routes.clear()
        self.remove_if(lambda m: isinstance(m.egress, TunnelPort) and not m.tunnel
                       and m.max_frame_len != min(m.egress.max_inner, 65535))
        # a tunnel's entry holds the route it was made for (None: the collect_md device's
        # way): another device or address, or a route where there was none, and it goes
        self.remove_if(lambda m: isinstance(port := m.ingress if m.tunnel else m.egress,
                                            TunnelPort) and self._route(port) != m.route)
        self.watch_underlay()

    def remove_if(self, doomed: Callable[[Mirrored], bool]) -> None:
        for mirrored in [m for m in self._entries.values() if doomed(m)]:
            self._fold_one(mirrored, remove=True)

    def clear(self) -> None:
        """Fold and remove every entry (ports came or went: plans hold port objects)."""
        for mirrored in list(self._entries.values()):
            self._fold_one(mirrored, remove=True)
        self._versions = ()
        self._valid_until = math.inf

    def fold(self) -> None:
        """Replay what the kernel forwarded since the last fold, oldest last use first."""
        read = []
        for mirrored in self._entries.values():
            counters = self._counters(mirrored, remove=False)
            if counters is not None and counters.packets > mirrored.folded_packets:
                read.append((counters.last_used_ns, mirrored, counters.packets,
                             counters.bytes))
        read.sort(key=lambda item: item[0])
        for last_ns, mirrored, packets, length in read:
            self._replay(mirrored, packets, length, last_ns)

    def _counters(self, mirrored: Mirrored, *, remove: bool) -> EntryCounters | None:
        """The entry's counters, read (and the entry removed, with ``remove``): summed over
        the maps it is in (a VXLAN arrival may be replayed by either program)."""
        fp = self.fastpath
        where, inner = mirrored.ifindex_or_vni, mirrored.inner
        found: list[EntryCounters | None] = []
        if mirrored.tunnel:
            if mirrored.plain:
                read = fp.remove_tunnel if remove else fp.tunnel_counters
                found.append(read(where, mirrored.remote_ip, inner))
            if mirrored.encap is not None:
                read_encap = fp.remove_encap_tunnel if remove else fp.encap_tunnel_counters
                found.append(read_encap(where, mirrored.remote_ip, inner, mirrored.encap))
        else:
            if mirrored.plain:
                found.append((fp.remove_port if remove else fp.port_counters)(where, inner))
            if mirrored.encap is not None:
                found.append((fp.remove_encap_port if remove else fp.encap_port_counters)(
                    where, inner))
        return _summed([c for c in found if c is not None])

    def _fold_one(self, mirrored: Mirrored, *, remove: bool) -> None:
        counters = self._counters(mirrored, remove=remove)
        if counters is not None and counters.packets > mirrored.folded_packets:
            self._replay(mirrored, counters.packets, counters.bytes, counters.last_used_ns)
        if remove:
            ident = mirrored.ident
            if self._entries.get(ident) is mirrored:
                del self._entries[ident]
                self.removed += 1

    def _replay(self, mirrored: Mirrored, packets: int, length: int, last_ns: int) -> None:
        delta = packets - mirrored.folded_packets
        delta_bytes = length - mirrored.folded_bytes
        mirrored.folded_packets, mirrored.folded_bytes = packets, length
        plan = mirrored.plan
        # the kernel's clock is CLOCK_MONOTONIC, the bridges' time.monotonic: the packets are
        # replayed as of the kernel's last use, as their walk would have had them then
        now = last_ns / _NS_PER_S if last_ns else plan.clock()
        # Python's deferred packets from before go first, as they came: replayed after, they
        # would set older times over the kernel's (a flow's used, a MAC's age and place)
        self.settle_until(now)
        plan.replay(delta, delta_bytes, now)
        mirrored.ingress.stats.rx_packets += delta
        mirrored.ingress.stats.rx_bytes += delta_bytes
        mirrored.egress.stats.tx_packets += delta
        mirrored.egress.stats.tx_bytes += delta_bytes

    def describe(self, bridge: object, key: FlowKey) -> str:
        """For a trace on ``bridge`` (a Bridge) of the flow ``key``: whether the kernel
        replays this hop of that flow now, and if so on which entry."""
        if key.get("dl_src") is None or key.get("dl_dst") is None:
            return "kernel fast path: not replayed in the kernel (no Ethernet header)"
        inner = inner_of(key)
        for mirrored in self._entries.values():
            if mirrored.inner == inner and any(cache.bridge is bridge
                                               for cache, _ in mirrored.plan.stages):
                kind = "GRE key" if mirrored.gre else "VXLAN"
                where = (f"{kind} {mirrored.ifindex_or_vni} from {mirrored.remote_ip}"
                         if mirrored.tunnel else f"port {mirrored.ingress.name}")
                return (f"kernel fast path: this hop of the flow is replayed in the kernel "
                        f"(entry from {where} to {mirrored.egress.name}; "
                        f"{mirrored.folded_packets} packets folded so far)")
        return ("kernel fast path: not replayed in the kernel now (Python forwards it: no "
                "plan yet, or one the kernel cannot replay exactly; see ofctl dp-stats)")

    def __len__(self) -> int:
        return len(self._entries)

    # upcalls ---------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        kernel = self.fastpath.stats()
        encap = self.fastpath.encap_stats()
        underlay = self.fastpath.underlay_stats()
        return {
            "kernel_entries": len(self._entries),
            "kernel_installed": self.installed,
            "kernel_removed": self.removed,
            "kernel_replayed_packets": kernel[Stat.PORT_HIT] + kernel[Stat.TUNNEL_HIT],
            "kernel_port_hits": kernel[Stat.PORT_HIT],
            "kernel_tunnel_hits": kernel[Stat.TUNNEL_HIT],
            "kernel_port_misses": kernel[Stat.PORT_MISS],
            "kernel_too_big": kernel[Stat.PORT_TOO_BIG],
            "kernel_upcalls": kernel[Stat.TUNNEL_UPCALL],
            "kernel_upcalls_lost": self.upcalls.lost,
            "kernel_gre_sent": encap[EncapStat.GRE_SENT],
            "kernel_gre_received": encap[EncapStat.GRE_RECEIVED],
            "kernel_gre_left_to_python": encap[EncapStat.GRE_PASS],
            "kernel_gre_not_ip_without_mac": encap[EncapStat.PORT_NO_MAC],
            "kernel_vxlan_sent": encap[EncapStat.VXLAN_SENT],
            "kernel_vxlan_received": encap[EncapStat.VXLAN_RECEIVED],
            "kernel_encap_failed": encap[EncapStat.FAILED],
            "kernel_underlay_handed_up": underlay[UnderlayStat.HANDED_UP],
            "kernel_underlay_lost": underlay[UnderlayStat.NOT_HANDED_UP]
            + (self.datagrams.lost if self.datagrams is not None else 0),
            "kernel_stays_in_python": dict(self.refusals),
            **self._port_meter_stats(),
        }

    def known_in_python(self, ingress: Port, key: FlowKey) -> None:
        """Python's tables have just answered a frame of VM port ``ingress`` (flow ``key``)
        and their cache will answer the next ones: the port meter must not hold them back.
        Called after walks only, which the walk meter bounds per port."""
        ifindex = self._ports.get(ingress.name)
        if ifindex is None or not self.port_meter[0] or key.get("vlan_tci", 0) \
                or key.get("dl_src") is None or key.get("dl_dst") is None:
            return
        self.fastpath.note_python_flow(ifindex, inner_of(key))

    def _port_meter_stats(self) -> dict[str, object]:
        """The port meter's setting and, per attached VM port, the frames it kept back."""
        counts = self.fastpath.port_meters()
        names = {ifindex: name for name, ifindex in self._ports.items()}
        dropped = {names[i]: kept for i, (_, kept) in counts.items() if i in names}
        rate, burst = self.port_meter
        return {"kernel_port_meter_rate": rate, "kernel_port_meter_burst": burst,
                "kernel_port_meter_dropped": sum(dropped.values()),
                "kernel_port_meter_dropped_by_port": dropped}

    def close(self) -> None:
        self.clear()
        self.upcalls.close()
        if self.datagrams is not None:
            self.datagrams.close()
        self._underlay.clear()  # the fast path's close detaches it
        for name, ifindex in list(self._ports.items()):
            try:
                self.fastpath.detach(ifindex)
            except KernelFastPathUnavailable as exc:
                log.debug("detaching the fast path from %s: %s", name, exc)
        self._ports.clear()
        self.fastpath.close()
        self._waiting.clear()
        if self._device_made and self.live:
            with IPRoute() as ipr:
                try:
                    ipr.link("del", index=self.device_ifindex)
                except OSError as exc:
                    if exc.errno != errno.ENODEV:
                        log.warning("cannot remove %s: %s", DEVICE_NAME, exc)


def stale_device_check(ipr: IPRoute | None = None) -> tuple[int, str] | None:
    """The VXLAN device a killed vswitchd left (ifindex, the pid its alias names), or None
    when there is none; raises when it is another live daemon's or not ours at all."""
    if ipr is None:
        with IPRoute() as own:
            return stale_device_check(own)
    found = ipr.link_lookup(ifname=DEVICE_NAME)
    if not found:
        return None
    alias = ipr.get_links(found[0])[0].get_attr("IFLA_IFALIAS") or ""
    pid = alias.removeprefix(OWNER_ALIAS) if alias.startswith(OWNER_ALIAS) else ""
    if not pid.isdigit() or _runs_vswitchd(int(pid)):
        # another vswitchd's in this namespace: two daemons cannot share it (each would
        # take the other's tunnel frames); or a device we did not make
        raise KernelFastPathUnavailable(
            f"{DEVICE_NAME} already exists in this network namespace (another "
            f"vswitchd's? if none runs here: ip link del {DEVICE_NAME})", errno.EEXIST)
    return int(found[0]), pid


def adopt_stale_device() -> bool:
    """Whether the VXLAN device a killed vswitchd left is one this daemon can go on with (a
    collect_md device on our UDP port): kept rather than removed and made again, since
    removing a device waits for the kernel's grace periods (40-900 ms measured on a loaded
    machine) while nothing crosses VXLAN. Its filter is replaced by ours at the attach,
    as a port's is, and its alias names us from then on."""
    with IPRoute() as ipr:
        stale = stale_device_check(ipr)
        if stale is None:
            return False
        index, pid = stale
        info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan" or data is None \
                or not data.get_attr("IFLA_VXLAN_COLLECT_METADATA") \
                or data.get_attr("IFLA_VXLAN_PORT") != VXLAN_PORT:
            return False
    log.warning("%s was left by vswitchd %s, which is gone: taken over", DEVICE_NAME, pid)
    return True


def take_back_stale_device() -> None:
    """Remove the VXLAN device a killed vswitchd left (its alias names a pid that runs no
    vswitchd any more), so that a daemon restarted after SIGKILL takes UDP 4789 again; any
    other device of that name (another daemon's, or not ours at all) is refused."""
    with IPRoute() as ipr:
        stale = stale_device_check(ipr)
        if stale is None:
            return
        index, pid = stale
        log.warning("%s was left by vswitchd %s, which is gone: removed, made again",
                    DEVICE_NAME, pid)
        try:
            ipr.link("del", index=index)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise KernelFastPathUnavailable(f"cannot remove the stale {DEVICE_NAME}: "
                                                f"{exc}", exc.errno or 0) from exc


def _runs_vswitchd(pid: int) -> bool:
    """Whether ``pid`` is a live vswitchd (a pid reused by anything else is not)."""
    if pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"vswitchd" in cmdline


def _summed(found: list[EntryCounters]) -> EntryCounters | None:
    """One plan's counters from the entries that replay it (None: it has none any more)."""
    if not found:
        return None
    return EntryCounters(sum(c.packets for c in found), sum(c.bytes for c in found),
                         max(c.last_used_ns for c in found))


def _drain(sock: socket.socket) -> int:
    """Discard what ``sock`` holds; the number of frames."""
    count = 0
    while True:
        try:
            sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return count
        except OSError:
            return count
        count += 1
