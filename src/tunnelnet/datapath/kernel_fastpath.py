"""The kernel fast path's Python side: load the replay programs, attach them, fill their maps.

This is the replay half of issue #22 as a library; vswitchd drives it through
kernel_mirror.py (`--fastpath`), see docs/architecture.md "The kernel fast path". What it does:

- ``port_ingress`` (tc ingress of a VM's port): a frame whose (port, inner key) has a plan
  in ``encap_port_plans`` is wrapped in GRE or VXLAN by the program itself and sent to the
  route's device (bpf_redirect_neigh); one in ``port_plans`` gets its tunnel key set and is
  redirected into the collect_md VXLAN device (VXLAN without a known route), or goes to
  another VM port; any other frame goes on (TC_ACT_OK) to the Python path's AF_PACKET socket.
- ``port_socket_filter`` (on that socket): the AF_PACKET tap sees a frame *before* tc ingress
  redirects it, so without this filter Python would forward every replayed frame a second
  time. It takes the same decision as ``port_ingress`` and hides the frames the kernel takes;
  of the others, it lets each port hand Python at most so many a second (the port meter,
  ``set_port_meter``), counting what it keeps back per port (``port_meters``).
- ``tunnel_ingress`` (tc ingress of the collect_md VXLAN device): (VNI, outer source, MAC)
  with a plan goes to its VM port; anything else is dropped, counted and handed up as a perf
  event sample (kernel_upcall.py): that device owns UDP 4789, so the Python path's VXLAN
  socket can no longer have it.
- ``underlay_ingress`` (tc ingress of the interfaces holding an IPv4 address): VXLAN that
  device would drop unseen (reserved bits, no I flag, too short) goes up whole as a perf
  sample of its own, so Python's parser judges and counts it; VXLAN it would take, with an
  entry in ``encap_tunnel_plans``, is unwrapped there and goes straight to its VM port.
- ``gre_uplink_ingress`` (tc ingress of a GRE route's device): GRE with an entry in
  ``encap_tunnel_plans`` is unwrapped and goes to its VM port.

Every call works in the calling thread's network namespace.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Final, TypeVar

from pyroute2 import IPRoute

from tunnelnet.datapath.errors import DatapathError
from tunnelnet.datapath.kernel_loader import (
    BPF_DIR,
    PORT_PRIORITY,
    BpfObject,
    KernelFastPathUnavailable,
    LibBpf,
    TcDirection,
    tc_attach,
    tc_detach,
)
from tunnelnet.datapath.kernel_maps import (
    EncapKind,
    EncapPortEntry,
    EncapPortPlan,
    EncapStat,
    EncapTunnelEntry,
    EncapTunnelPlan,
    EntryCounters,
    Inner,
    MeterConfig,
    PortEntry,
    PortMeter,
    PortPlan,
    Stat,
    TunnelEntry,
    TunnelPlan,
    UnderlayStat,
    encap_tunnel_key,
    port_key,
    tunnel_key,
)

log = logging.getLogger(__name__)

REPLAY_OBJECT: Final = BPF_DIR / "replay.bpf.o"
SO_ATTACH_BPF: Final = 50  # asm-generic/socket.h
BPF_ANY: Final = 0
VXLAN_PORT: Final = 4789
# gre_uplink_ingress's tc filter: its own handle and priority, so that it can share the
# uplink's clsact with other filters (it lets what is not its own go on to them)
GRE_UPLINK_HANDLE: Final = 0x47
GRE_UPLINK_PRIORITY: Final = 0x47
_Entry = PortEntry | TunnelEntry | EncapPortEntry | EncapTunnelEntry
UNDERLAY_PRIORITY: Final = 0x7C1  # tc priority of underlay_ingress: a number of its own
E = TypeVar("E", bound=IntEnum)


def _netns_id() -> int:
    """The calling thread's network namespace (its inode), to detach only where we attached."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@dataclass(slots=True)
class KernelFastPath:
    """The loaded replay programs and their maps; ``close()`` detaches and frees them."""

    libbpf: LibBpf
    obj: BpfObject
    # (namespace, ifindex, direction, tc priority) of every filter we put on
    attached: list[tuple[int, int, TcDirection, int]] = field(default_factory=list)
    uplinks: list[tuple[int, int]] = field(default_factory=list)  # GRE: (netns, ifindex)

    @classmethod
    def load(cls, path: Path = REPLAY_OBJECT) -> KernelFastPath:
        """Load the programs; raises ``KernelFastPathUnavailable`` saying why they cannot run."""
        libbpf = LibBpf.open()
        return cls(libbpf, BpfObject.load(libbpf, path))

    # attaching

    def attach_port(self, ifindex: int) -> None:
        """Replay plans for frames arriving from the VM behind interface ``ifindex``."""
        self._attach(ifindex, "port_ingress")

    def attach_tunnel_device(self, ifindex: int) -> None:
        """Deliver frames out of the collect_md VXLAN device ``ifindex`` by the tunnel plans."""
        self._attach(ifindex, "tunnel_ingress")

    def attach_gre_uplink(self, ifindex: int) -> None:
        """Deliver GRE packets arriving on ``ifindex`` (the underlay device) by the GRE
        tunnel plans; a second call for the same device does nothing."""
        here = (_netns_id(), ifindex)
        if here in self.uplinks:
            return
        tc_attach(self.libbpf, ifindex, TcDirection.INGRESS,
                  self.obj.program_fd("gre_uplink_ingress"), GRE_UPLINK_HANDLE,
                  GRE_UPLINK_PRIORITY)
        self.uplinks.append(here)

    def detach_gre_uplink(self, ifindex: int) -> None:
        here = (_netns_id(), ifindex)
        if here in self.uplinks:
            self.uplinks.remove(here)
            tc_detach(self.libbpf, ifindex, TcDirection.INGRESS, GRE_UPLINK_HANDLE,
                      GRE_UPLINK_PRIORITY)

    def remove_stale_gre_uplink(self, ifindex: int) -> None:
        """Take off ``ifindex`` a GRE uplink filter we did not attach: a killed daemon's,
        whose stale plans would otherwise go on delivering GRE into VM ports for as long as
        no plan of ours attaches our own in its place (attach_gre_uplink is lazy)."""
        if (_netns_id(), ifindex) not in self.uplinks:
            tc_detach(self.libbpf, ifindex, TcDirection.INGRESS, GRE_UPLINK_HANDLE,
                      GRE_UPLINK_PRIORITY)

    def attach_underlay(self, ifindex: int) -> None:
        """Hand up the VXLAN datagrams arriving on ``ifindex`` that the collect_md device
        would drop unseen (underlay_ingress), at a priority of its own: the interface may be
        any of the host's, and other filters on it run after ours."""
        tc_attach(self.libbpf, ifindex, TcDirection.INGRESS,
                  self.obj.program_fd("underlay_ingress"), priority=UNDERLAY_PRIORITY)
        self.attached.append((_netns_id(), ifindex, TcDirection.INGRESS, UNDERLAY_PRIORITY))

    def set_local_addresses(self, addresses: Iterable[str]) -> None:
        """The IPv4 addresses of this namespace: underlay_ingress judges only datagrams
        delivered here (not those the host forwards)."""
        fd = self.obj.map_fd("local_ipv4")
        # the key is the packet's own four bytes (network order) read as a native integer
        wanted = {int.from_bytes(socket.inet_aton(a), sys.byteorder) for a in addresses}
        present: set[int] = set()
        key, nxt = ctypes.c_uint32(), ctypes.c_uint32()
        prev = None
        while self.libbpf.lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
            present.add(nxt.value)
            key.value = nxt.value
            prev = ctypes.byref(key)
        one = ctypes.c_uint8(1)
        for address in wanted - present:
            self._ok(self.libbpf.lib.bpf_map_update_elem(
                fd, ctypes.byref(ctypes.c_uint32(address)), ctypes.byref(one), BPF_ANY),
                "update local_ipv4")
        for address in present - wanted:
            self.libbpf.lib.bpf_map_delete_elem(fd, ctypes.byref(ctypes.c_uint32(address)))

    def set_port_meter(self, rate: float, burst: float) -> None:
        """At most ``rate`` frames a second, in bursts of ``burst``, from each VM port's
        frames without an entry to its Python socket (``rate`` 0: no meter)."""
        if rate < 0 or (rate and burst < 1):
            raise DatapathError(f"port meter: rate {rate} and burst {burst} must be positive")
        cost = round(1e9 / rate) if rate else 0
        config = MeterConfig(cost, round(cost * burst))
        self._ok(self.libbpf.lib.bpf_map_update_elem(
            self.obj.map_fd("meter_config"), ctypes.byref(ctypes.c_uint32(0)),
            ctypes.byref(config), BPF_ANY), "update meter_config")

    def port_meters(self) -> dict[int, tuple[int, int]]:
        """Per VM port (ifindex) with a meter: (frames handed up to Python, frames kept
        back over the meter)."""
        fd = self.obj.map_fd("port_meters")
        out: dict[int, tuple[int, int]] = {}
        key, nxt, value = ctypes.c_uint32(), ctypes.c_uint32(), PortMeter()
        prev = None
        while self.libbpf.lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
            key.value = nxt.value
            prev = ctypes.byref(key)
            if self.libbpf.lib.bpf_map_lookup_elem(fd, prev, ctypes.byref(value)) == 0:
                out[key.value] = (value.passed, value.dropped)
        return out

    def note_python_flow(self, in_ifindex: int, inner: Inner) -> None:
        """Frames from VM port ``in_ifindex`` with ``inner`` are a flow Python knows: the
        port meter lets them all up (an LRU map: the least used are forgotten first)."""
        self._ok(self.libbpf.lib.bpf_map_update_elem(
            self.obj.map_fd("python_flows"), ctypes.byref(port_key(in_ifindex, inner)),
            ctypes.byref(ctypes.c_uint8(1)), BPF_ANY), "update python_flows")

    def forget_port_meter(self, ifindex: int) -> None:
        """The port went: its bucket goes (an interface that reuses the index starts full)."""
        self.libbpf.lib.bpf_map_delete_elem(self.obj.map_fd("port_meters"),
                                            ctypes.byref(ctypes.c_uint32(ifindex)))

    def underlay_stats(self) -> dict[UnderlayStat, int]:
        return self._percpu_counters("underlay_stats", UnderlayStat)

    def filter_socket(self, sock: socket.socket, *, untagged_only: bool = False) -> None:
        """Hide from the Python path's AF_PACKET socket the frames the kernel forwards
        (``untagged_only``: and tagged frames, which another socket reads: tagsplit.py)."""
        fd = self.obj.program_fd("port_socket_filter_untagged" if untagged_only
                                 else "port_socket_filter")
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, fd)
        except OSError as exc:
            raise KernelFastPathUnavailable(
                f"cannot attach the socket filter: {exc.strerror}", exc.errno or 0) from exc

    def _attach(self, ifindex: int, program: str) -> None:
        tc_attach(self.libbpf, ifindex, TcDirection.INGRESS, self.obj.program_fd(program))
        self.attached.append((_netns_id(), ifindex, TcDirection.INGRESS, PORT_PRIORITY))

    def detach(self, ifindex: int, priority: int = PORT_PRIORITY) -> None:
        """Take our filter (at ``priority``) off ``ifindex`` in the calling thread's
        namespace."""
        here = _netns_id()
        for item in [a for a in self.attached
                     if a[0] == here and a[1] == ifindex and a[3] == priority]:
            tc_detach(self.libbpf, ifindex, item[2], priority=item[3])
            self.attached.remove(item)

    # plans

    def install_port(self, plan: PortPlan) -> None:
        """Add or replace a port plan (a replaced plan's counters start again at zero)."""
        if not 64 <= plan.max_frame_len <= 65535:
            raise DatapathError(f"max_frame_len {plan.max_frame_len} is outside 64..65535")
        self._update("port_plans", plan.key(), plan.entry())

    def remove_port(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        """Remove a port plan; its last counters, to fold into the flows, or None if absent."""
        return self._remove("port_plans", port_key(in_ifindex, inner), PortEntry())

    def port_counters(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        return self._counters("port_plans", port_key(in_ifindex, inner), PortEntry())

    def install_tunnel(self, plan: TunnelPlan) -> None:
        self._update("tunnel_plans", plan.key(), plan.entry())

    def remove_tunnel(self, vni: int, remote_ip: str, inner: Inner) -> EntryCounters | None:
        return self._remove("tunnel_plans", tunnel_key(vni, remote_ip, inner), TunnelEntry())

    def tunnel_counters(self, vni: int, remote_ip: str, inner: Inner) -> EntryCounters | None:
        return self._counters("tunnel_plans", tunnel_key(vni, remote_ip, inner),
                              TunnelEntry())

    def install_encap_port(self, plan: EncapPortPlan) -> None:
        """Add or replace a VM port's plan into a tunnel the programs write (GRE or VXLAN;
        its counters start again at zero)."""
        if not 64 <= plan.max_frame_len <= 65535:
            raise DatapathError(f"max_frame_len {plan.max_frame_len} is outside 64..65535")
        self._update("encap_port_plans", plan.map_key(), plan.entry())

    def remove_encap_port(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        return self._remove("encap_port_plans", port_key(in_ifindex, inner),
                            EncapPortEntry())

    def encap_port_counters(self, in_ifindex: int, inner: Inner) -> EntryCounters | None:
        return self._counters("encap_port_plans", port_key(in_ifindex, inner),
                              EncapPortEntry())

    def install_encap_tunnel(self, plan: EncapTunnelPlan) -> None:
        self._update("encap_tunnel_plans", plan.map_key(), plan.entry())

    def remove_encap_tunnel(self, key: int, remote_ip: str, inner: Inner,
                            kind: EncapKind = EncapKind.GRE) -> EntryCounters | None:
        return self._remove("encap_tunnel_plans",
                            encap_tunnel_key(key, remote_ip, inner, kind), EncapTunnelEntry())

    def encap_tunnel_counters(self, key: int, remote_ip: str, inner: Inner,
                              kind: EncapKind = EncapKind.GRE) -> EntryCounters | None:
        return self._counters("encap_tunnel_plans",
                              encap_tunnel_key(key, remote_ip, inner, kind),
                              EncapTunnelEntry())

    def stats(self) -> dict[Stat, int]:
        """The programs' outcome counters, summed over CPUs."""
        return self._percpu_counters("stats", Stat)

    def encap_stats(self) -> dict[EncapStat, int]:
        """The self-written tunnels' own outcome counters (GRE, VXLAN), summed over CPUs."""
        return self._percpu_counters("encap_stats", EncapStat)

    def _percpu_counters(self, name: str, which: type[E]) -> dict[E, int]:
        ncpu = self.libbpf.lib.libbpf_num_possible_cpus()
        fd = self.obj.map_fd(name)
        out: dict[E, int] = {}
        for stat in which:
            key = ctypes.c_uint32(int(stat))
            values = (ctypes.c_uint64 * ncpu)()
            self._ok(self.libbpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key),
                                                         ctypes.byref(values)), name)
            out[stat] = sum(values)
        return out

    def close(self) -> None:
        here = _netns_id()
        for item in [a for a in self.attached if a[0] == here]:
            tc_detach(self.libbpf, item[1], item[2], priority=item[3])
        self.attached.clear()  # filters in other namespaces go with their interfaces
        for _, ifindex in [u for u in self.uplinks if u[0] == here]:
            self.detach_gre_uplink(ifindex)
        self.uplinks.clear()
        self.obj.close()

    # map access

    def _update(self, name: str, key: ctypes.Structure, value: ctypes.Structure) -> None:
        fd = self.obj.map_fd(name)
        self._ok(self.libbpf.lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value),
                                                     BPF_ANY), f"update {name}")

    def _counters(self, name: str, key: ctypes.Structure,
                  value: _Entry) -> EntryCounters | None:
        fd = self.obj.map_fd(name)
        ret = self.libbpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
        if ret == -errno.ENOENT:
            return None
        self._ok(ret, f"lookup {name}")
        return EntryCounters(value.packets, value.bytes, value.last_used_ns)

    def _remove(self, name: str, key: ctypes.Structure,
                value: _Entry) -> EntryCounters | None:
        last = self._counters(name, key, value)
        if last is None:
            return None
        ret = self.libbpf.lib.bpf_map_delete_elem(self.obj.map_fd(name), ctypes.byref(key))
        if ret != -errno.ENOENT:
            self._ok(ret, f"delete {name}")
        return last

    @staticmethod
    def _ok(ret: int, what: str) -> None:
        if ret < 0:
            raise DatapathError(f"{what}: {os.strerror(-ret)}")


def ensure_vxlan_device(name: str, port: int = VXLAN_PORT) -> int:
    """A collect_md ("external") VXLAN device, made if missing and set up; its ifindex.

    It owns UDP ``port`` in its namespace from then on."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_collect_metadata=1,
                         vxlan_port=port, vxlan_learning=0)
            except OSError as exc:
                raise DatapathError(f"cannot make the VXLAN device {name}: {exc}") from exc
            found = ipr.link_lookup(ifname=name)
        ifindex = int(found[0])
        link = ipr.get_links(ifindex)[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        data = info.get_attr("IFLA_INFO_DATA") if info and kind == "vxlan" else None
        if data is None or not data.get_attr("IFLA_VXLAN_COLLECT_METADATA"):
            # a plain VXLAN device would send everything to its one remote: refuse it
            raise DatapathError(f"{name} exists and is not a collect_md (external) VXLAN device")
        ipr.link("set", index=ifindex, state="up")
        return ifindex


def load_or_explain() -> tuple[KernelFastPath | None, str]:
    """The fast path, or None and the one-line reason the Python path is used instead."""
    try:
        return KernelFastPath.load(), "kernel"
    except KernelFastPathUnavailable as exc:
        return None, f"off: {exc}"
