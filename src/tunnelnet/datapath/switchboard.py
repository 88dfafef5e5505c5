"""The datapath's configuration: bridges and ports of one daemon, added, changed and removed.

The per-packet path is forwarding.py's; this module builds what it forwards over. Configuration
changes are all-or-nothing: a port is built (sockets opened, options checked) before anything is
registered, and each later step undoes the earlier ones when it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, Literal

from tunnelnet.datapath import bfd_monitor
from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.forwarding import MAX_PATCH_DEPTH, BridgeState, Forwarder
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import (
    InternalPort,
    PatchPort,
    Port,
    PortKind,
    check_name,
)
from tunnelnet.datapath.system_port import SystemPort
from tunnelnet.datapath.tunnel import TunnelPort
from tunnelnet.switch import Bridge

if TYPE_CHECKING:  # the kernel fast path's modules load pyroute2 and libbpf: only when used
    from tunnelnet.datapath.kernel_mirror import KernelMirror, KernelPort

__all__ = ["MAX_PATCH_DEPTH", "BridgeState", "PortFactory", "Switchboard", "make_port"]

log = logging.getLogger(__name__)

PortFactory = Callable[[PortKind, str, Mapping[str, str]], Port]

# 802.1Q's reserved VLAN 4095, Neutron's DEAD_VLAN_TAG: never switched (the agent's table-0
# drop flow, and no other port is on it). Where a vNIC waits until its agent binds it.
DEAD_VLAN: Final = 4095


def isolated(state: BridgeState, tag: int | None, external_ids: Mapping[str, str]) -> int | None:
    """The tag a port gets: a vNIC (a port with an ``iface-id``) on a fail-secure bridge
    that is given no tag waits on the dead VLAN, not as a trunk of every VLAN to NORMAL.

    os-vif does this when it plugs a port (``isolate_vif``: tag 4095 until the Neutron agent
    retags it; Open vSwitch itself plugs an untagged port as a trunk). Doing it here makes
    every plugger safe, a hand's ``vsctl add-port`` or a Nova without isolate_vif too: the
    window until the agent's drop flow lands (0.1-0.2 s, in which such a port heard every
    tenant's broadcasts, the unbound-port bug 1734320) is gone. A fail-secure bridge is one
    a controller programs; a standalone one stays a plain learning switch."""
    if tag is None and external_ids.get("iface-id") and state.fail_mode == "secure":
        return DEAD_VLAN
    return tag


def make_port(kind: PortKind, name: str, options: Mapping[str, str], *,
              persistent_taps: bool = False) -> Port:
    """A port of ``kind``; ``persistent_taps`` makes internal ports outlive a crash (a
    daemon that restores its configuration takes them back, ports.InternalPort)."""
    if kind is PortKind.SYSTEM:
        return SystemPort(name, options)
    if kind is PortKind.INTERNAL:
        return InternalPort(name, options, persistent=persistent_taps)
    if kind is PortKind.PATCH:
        return PatchPort(name, options)
    # a tunnel: TunnelPort refuses a kind the datapath does not carry (tunnel_port.py)
    return TunnelPort(kind, name, options)


def _kernel_port() -> type[KernelPort]:
    from tunnelnet.datapath.kernel_mirror import KernelPort

    return KernelPort


class Switchboard:
    """Bridges and ports of one daemon; the forwarding between them is ``forwarding``'s."""

    def __init__(self, loop: EventLoop, *, port_factory: PortFactory = make_port) -> None:
        self._loop = loop
        self._make_port = port_factory
        self.bridges: dict[str, BridgeState] = {}
        self.ports: dict[str, Port] = {}  # every port of the daemon by name (names are global)
        self.forwarding = Forwarder(loop, self.bridges, self.ports)
        self.tunnels = self.forwarding.tunnels
        self.bfd = self.forwarding.bfd
        self.plans = self.forwarding.plans
        # the forwarder's own methods: whoever reads or changes a bridge settles first
        self.settle = self.forwarding.settle
        self.inject = self.forwarding.inject
        # the kernel fast path: its mode ("kernel" or "off") and why, as vsctl show says it
        self.kernel: KernelMirror | None = None
        self.fastpath_mode = "off"
        self.fastpath_why = "not asked for"

    def use_kernel(self, mirror: KernelMirror, udp_port: int) -> None:
        """Mirror plans into the kernel from now on (before any port is added: the kernel's
        VXLAN device owns ``udp_port``, so no socket of ours listens there)."""
        if self.ports:
            raise DatapathError("the kernel fast path is set up before any port")
        self.kernel = self.forwarding.kernel = mirror
        mirror.settle_until = self.forwarding.settle_until
        self.tunnels.kernel_udp = frozenset({udp_port})
        self._loop.add_reader(mirror.upcalls.fileno(), self._read_upcalls)
        if mirror.datagrams is not None:
            self._loop.add_reader(mirror.datagrams.fileno(), self._read_datagrams)
        self._loop.after_each_round(mirror.check)
        self.fastpath_mode, self.fastpath_why = "kernel", "the kernel replays plans"

    def _read_upcalls(self) -> None:
        mirror = self.kernel
        if mirror is None:
            return
        receive = self.tunnels.rx.receive_upcall
        for miss in mirror.upcalls.poll(0):
            mirror.upcalls_read += 1
            receive(miss.vni, miss.remote_ip, miss.frame, miss.gso_size)

    def _read_datagrams(self) -> None:
        mirror = self.kernel
        if mirror is None or mirror.datagrams is None:
            return
        receive = self.tunnels.rx.receive_datagram
        for datagram in mirror.datagrams.poll(0):
            receive(datagram.remote_ip, datagram.payload)

    def sync(self) -> None:
        """Everything counted as of now: deferred plans settled, the kernel's counters
        folded (before a control request reads or changes anything, and housekeeping)."""
        if self.kernel is not None:
            self.kernel.fold()  # settles the deferred packets older than the kernel's first
        self.settle()

    def check_kernel(self) -> None:
        """Take out of the kernel every plan that no longer holds (after a change)."""
        if self.kernel is not None:
            self.kernel.check()

    def refresh_routes(self) -> None:
        """Underlay MTU and source address towards each tunnel peer, read again; kernel
        entries into a tunnel whose MTU changed go with them."""
        self.tunnels.refresh_routes()
        if self.kernel is not None:
            self.kernel.routes_refreshed()

    def _forget_plans(self) -> None:
        self.plans.clear()
        if self.kernel is not None:
            self.kernel.clear()

    @property
    def fast_path(self) -> bool:
        """False: every packet walks the tables (the oracle of the plans' tests)."""
        return self.forwarding.fast_path

    @fast_path.setter
    def fast_path(self, on: bool) -> None:
        self.forwarding.fast_path = on

    def bridge(self, name: str) -> BridgeState:
        state = self.bridges.get(name)
        if state is None:
            raise DatapathError(f"no bridge named {name!r}")
        return state

    def add_bridge(self, name: str, fail_mode: str = "standalone", may_exist: bool = False
                   ) -> None:
        if fail_mode not in ("standalone", "secure"):
            raise DatapathError(f"fail_mode {fail_mode!r}: use 'standalone' or 'secure'")
        check_name(name)
        if name in self.bridges:
            if may_exist:
                return
            raise DatapathError(f"bridge {name!r} already exists")
        if name in self.ports:
            raise DatapathError(f"{name!r} is already the name of a port")
        mode: Literal["standalone", "secure"] = "secure" if fail_mode == "secure" else "standalone"
        self.bridges[name] = BridgeState(Bridge(name, fail_mode=mode), fail_mode)
        log.info("bridge %s added (fail_mode=%s)", name, fail_mode)

    def del_bridge(self, name: str, if_exists: bool = False) -> None:
        if name not in self.bridges and if_exists:
            return
        state = self.bridge(name)
        for port in list(state.ports.values()):
            self._remove_port(state, port)
        del self.bridges[name]
        log.info("bridge %s deleted", name)

    def add_port(self, bridge: str, name: str, kind: PortKind, *, tag: int | None = None,
                 ofport: int | None = None, options: Mapping[str, str] | None = None,
                 external_ids: Mapping[str, str] | None = None, may_exist: bool = False,
                 bfd: Mapping[str, str] | None = None) -> int:
        state = self.bridge(bridge)
        check_name(name)
        existing = self.ports.get(name)
        if existing is not None:
            if may_exist and existing.bridge == bridge:
                return existing.ofport
            where = existing.bridge
            raise DatapathError(f"port {name!r} already exists on bridge {where!r}")
        if name in self.bridges:
            raise DatapathError(f"{name!r} is already the name of a bridge")
        if tag is not None and not 0 <= tag <= 4095:
            raise DatapathError(f"port {name!r}: tag {tag} is not a VLAN id (0-4095)")
        tag = isolated(state, tag, external_ids or {})
        if ofport is not None and not 1 <= ofport < 0xFF00:
            raise DatapathError(f"port {name!r}: ofport {ofport} is not in 1-65279")
        if ofport is not None and ofport in state.ports:
            other = state.ports[ofport].name
            raise DatapathError(f"port {name!r}: ofport {ofport} is taken by {other!r}")
        if bfd:  # a bad column refuses the port before anything is made
            if kind in (PortKind.SYSTEM, PortKind.INTERNAL, PortKind.PATCH):
                raise DatapathError(f"interface {name!r}: BFD runs on tunnel ports only")
            self.bfd.check(name, bfd)
        port = self._make_port(kind, name, options or {})  # opens sockets; raises when it can't
        try:
            if isinstance(port, TunnelPort):
                self.tunnels.add(port)
            try:
                number = state.bridge.add_port(name, ofport, tag=tag)
            except Exception:
                if isinstance(port, TunnelPort):
                    self.tunnels.remove(port)
                raise
        except Exception:
            port.close()
            raise
        port.bridge = bridge
        port.ofport = number
        if self.kernel is not None and isinstance(port, _kernel_port()):
            try:
                self.kernel.attach(port)
            except DatapathError as exc:  # the Python path still serves it
                log.warning("port %s: the kernel fast path cannot serve it: %s", name, exc)
        self.sync()
        self._forget_plans()
        state.ports[number] = port
        state.external_ids[name] = dict(external_ids or {})
        self.ports[name] = port
        for fd, receive in port.readers():
            self._loop.add_reader(fd, self.forwarding.reader(port, receive))
        if bfd and isinstance(port, TunnelPort):
            self.bfd.configure(port, bfd)
        log.info("port %s added to %s as ofport %d (type %s)", name, bridge, number,
                 kind.value)
        return number

    def set_port(self, bridge: str, name: str, *, tag: int | None = None,
                 clear_tag: bool = False, external_ids: Mapping[str, str] | None = None
                 ) -> None:
        port = self._find_port(bridge, name)
        state = self.bridges[port.bridge]
        self.settle()
        if tag is not None and clear_tag:
            raise DatapathError(f"port {name!r}: give a tag or clear it, not both")
        if tag is not None and not 0 <= tag <= 4095:
            raise DatapathError(f"port {name!r}: tag {tag} is not a VLAN id (0-4095)")
        config = state.bridge.port(name)
        ids = state.external_ids.get(name, {}) if external_ids is None else external_ids
        if tag is None and (clear_tag or config.tag is None):
            # a cleared tag, or an iface-id given to an untagged port: a vNIC still waits on
            # the dead VLAN (isolated()), only a port that is no vNIC becomes a trunk
            tag = isolated(state, None, ids)
            clear_tag = clear_tag and tag is None
        if tag is not None or clear_tag:
            new_tag = None if clear_tag else tag
            if new_tag != config.tag:
                # the switch has no in-place retag: re-adding with the same number keeps
                # every flow (they refer to the number) and forgets the port's MACs, as
                # Open vSwitch does when a port's VLAN changes
                state.bridge.del_port(name)
                state.bridge.add_port(name, config.ofport, tag=new_tag, trunks=config.trunks,
                                      no_flood=config.no_flood)
                log.info("port %s on %s: tag %s -> %s", name, port.bridge, config.tag,
                         new_tag)
        if external_ids is not None:
            state.external_ids[name] = dict(external_ids)

    def set_interface_bfd(self, name: str, changes: Mapping[str, str], *,
                          replace: bool = False) -> None:
        """Set keys of the interface's ``bfd`` column (``vsctl set interface X bfd:K=V``),
        or with ``replace`` the whole column (``vsctl clear interface X bfd`` gives none):
        BFD starts, changes or stops as the column then says. A bad column changes nothing."""
        port = bfd_monitor.check_tunnel(self._find_port("", name), name)
        column = {} if replace else dict(port.bfd_column)
        column.update(changes)
        self.settle()
        self.bfd.configure(port, column)

    def _find_port(self, bridge: str, name: str) -> Port:
        port = self.ports.get(name)
        if port is None or (bridge and port.bridge != bridge):
            if bridge:
                self.bridge(bridge)  # unknown bridge is the clearer error
            where = f" on bridge {bridge!r}" if bridge else ""
            raise DatapathError(f"no port named {name!r}{where}")
        return port

    def del_port(self, bridge: str, name: str, if_exists: bool = False) -> None:
        port = self.ports.get(name)
        if if_exists and (port is None or (bridge and port.bridge != bridge)):
            return
        port = self._find_port(bridge, name)
        self._remove_port(self.bridges[port.bridge], port)

    def _remove_port(self, state: BridgeState, port: Port) -> None:
        self.sync()
        self._forget_plans()
        if self.kernel is not None:
            self.kernel.detach(port)
        for fd, _ in port.readers():
            self._loop.remove_reader(fd)
        if isinstance(port, TunnelPort):
            self.bfd.stop(port)  # the peer hears AdminDown while the tunnel is still there
            self.tunnels.remove(port)
        state.bridge.del_port(port.name)
        state.ports.pop(port.ofport, None)
        state.external_ids.pop(port.name, None)
        self.ports.pop(port.name, None)
        if self.forwarding.walk_meter is not None:
            self.forwarding.walk_meter.forget(port.name)
        port.close()
        log.info("port %s deleted from %s", port.name, state.bridge.name)

    def close(self) -> None:
        """Delete every bridge (closing sockets, removing the tap devices we made)."""
        for name in list(self.bridges):
            self.del_bridge(name)
        self.tunnels.close()
        if self.kernel is not None:
            self._loop.remove_reader(self.kernel.upcalls.fileno())
            if self.kernel.datagrams is not None:
                self._loop.remove_reader(self.kernel.datagrams.fileno())
            self.kernel.close()
            self.kernel = self.forwarding.kernel = None

    def housekeeping(self) -> None:
        self.sync()  # timeouts and MAC ages see what the kernel forwarded
        for state in self.bridges.values():
            state.bridge.expire()
            for port in state.ports.values():
                if isinstance(port, SystemPort) and port.collect_kernel_drops():
                    self.forwarding.ratelog.warning(f"kdrop:{port.name}", "%s: the kernel dropped "
                                          "frames for us (receive buffer full)", port.name)
        self.check_kernel()  # an expiry or an aged MAC takes its plans out of the kernel

