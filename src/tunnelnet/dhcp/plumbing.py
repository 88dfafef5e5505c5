"""The DHCP port's wire: a namespace per network, a veth from it to br-int, plugged as Nova
plugs a VM (on the dead VLAN, ``external_ids:iface-id`` = the port's id) so the Open vSwitch
agent binds it like any port of the network.

Neutron's interface driver with ``ovs_use_veth`` does the same: ``tapXXXXXXXX-XX`` on br-int,
``ns-XXXXXXXX-XX`` inside ``qdhcp-<network id>``. Namespaces and links go through netlink
(pyroute2); each call tolerates only the errno that means "already so".
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.errors import TunnelnetError

NIC_NAME_LEN = 14  # Neutron's and Nova's tap names: a prefix and the port id's start


class PlumbingError(TunnelnetError):
    """A namespace, link or switch port of a DHCP port could not be made or removed."""


def tap_name(port_id: str) -> str:
    return f"tap{port_id}"[:NIC_NAME_LEN]


def inner_name(port_id: str) -> str:
    return f"ns-{port_id}"[:NIC_NAME_LEN]


def namespace_name(prefix: str, network_id: str) -> str:
    """``qdhcp-<network id>`` as Neutron names it, after a prefix of the caller's (a lab's
    or a test's own, so several can share one machine)."""
    return f"{prefix}qdhcp-{network_id}"


class SwitchPlug(Protocol):
    """Puts the host end of a DHCP port on br-int, or takes it off."""

    def plug(self, tap: str, port_id: str, mac: str) -> None: ...

    def unplug(self, tap: str) -> None: ...


class VswitchdPlug:
    """tunnelnet's vswitchd, over its control socket."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir

    def plug(self, tap: str, port_id: str, mac: str) -> None:
        try:
            with ControlClient(self.rundir, timeout=10.0) as ctl:
                # on the dead VLAN until the agent binds it, as a VM's vNIC
                ctl.call(m.AddPort("br-int", tap, type="system", may_exist=True, tag=DEAD_VLAN,
                                   external_ids={"iface-id": port_id, "attached-mac": mac,
                                                 "iface-status": "active"}))
        except TunnelnetError as exc:
            raise PlumbingError(f"cannot plug {tap} into br-int: {exc}") from exc

    def unplug(self, tap: str) -> None:
        try:
            with ControlClient(self.rundir, timeout=10.0) as ctl:
                ctl.call(m.DelPort("br-int", tap, if_exists=True))
        except TunnelnetError as exc:
            raise PlumbingError(f"cannot unplug {tap} from br-int: {exc}") from exc


class OvsPlug:
    """Open vSwitch, through ovs-vsctl (``rundir``: a privately started one's)."""

    def __init__(self, rundir: str | None) -> None:
        self.db = [f"--db=unix:{rundir}/db.sock"] if rundir else []

    def _vsctl(self, *args: str) -> None:
        proc = subprocess.run(["ovs-vsctl", "--timeout=10", *self.db, *args],
                              capture_output=True, text=True, timeout=15, check=False)
        if proc.returncode != 0:
            raise PlumbingError(f"ovs-vsctl {' '.join(args[:3])}: {proc.stderr.strip()}")

    def plug(self, tap: str, port_id: str, mac: str) -> None:
        self._vsctl("--may-exist", "add-port", "br-int", tap, f"tag={DEAD_VLAN}", "--", "set",
                    "Interface", tap, f"external_ids:iface-id={port_id}",
                    f"external_ids:attached-mac={mac}", "external_ids:iface-status=active")

    def unplug(self, tap: str) -> None:
        self._vsctl("--if-exists", "del-port", "br-int", tap)


def _ipr(ns: str | None) -> IPRoute:
    return IPRoute(netns=ns) if ns else IPRoute()


def _index(ip: IPRoute, ifname: str) -> int | None:
    found = ip.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def exists(ns: str) -> bool:
    return ns in netns.listnetns()


def make_namespace(ns: str) -> None:
    try:
        netns.create(ns)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise PlumbingError(f"cannot create namespace {ns}: {exc.strerror}") from exc
    # DHCP here is IPv4 only: IPv6's own chatter (router solicitations, MLD, DAD) from the
    # DHCP port would be flooded to every hypervisor of the network for nothing
    for scope in ("all", "default"):
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{scope}.disable_ipv6=1"],
                       capture_output=True, timeout=10, check=False)
    with _ipr(ns) as ip:
        lo = _index(ip, "lo")
        if lo is not None:
            ip.link("set", index=lo, state="up")


def remove_namespace(ns: str) -> None:
    """The namespace and the veth in it (its peer on the host goes with it)."""
    try:
        netns.remove(ns)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise PlumbingError(f"cannot remove namespace {ns}: {exc.strerror}") from exc


def make_veth(host_ns: str | None, tap: str, ns: str, inner: str, *, mac: str,
              mtu: int) -> None:
    """The veth from the host (where the switch runs) into the DHCP namespace, both ends up,
    the inner end with the port's MAC and the network's MTU. Already there: left as it is
    but for MAC and MTU."""
    try:
        with _ipr(ns) as ip:
            present = _index(ip, inner) is not None
        if not present:
            with _ipr(host_ns) as ip:
                ip.link("add", ifname=tap, kind="veth", peer={"ifname": inner, "net_ns_fd": ns})
        with _ipr(host_ns) as ip:
            idx = _index(ip, tap)
            if idx is None:
                raise PlumbingError(f"{tap} is missing on the host side of {ns}")
            ip.link("set", index=idx, mtu=mtu, state="up")
        with _ipr(ns) as ip:
            idx = _index(ip, inner)
            if idx is None:
                raise PlumbingError(f"{inner} is missing in {ns}")
            ip.link("set", index=idx, address=mac, mtu=mtu, state="up")
    except NetlinkError as exc:
        raise PlumbingError(f"cannot make veth {tap} <-> {ns}/{inner}: {exc}") from exc
    # dnsmasq's replies leave with checksums done in software: a userspace switch reads the
    # raw frame (no partial checksum for it to finish)
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off"],
                   capture_output=True, timeout=10, check=False)


def set_addresses(ns: str, ifname: str, addresses: Sequence[tuple[str, int]]) -> None:
    """Exactly these IPv4 addresses on ``ifname`` (others removed), as the DHCP port has."""
    wanted = {(a, p) for a, p in addresses}
    try:
        with _ipr(ns) as ip:
            idx = _index(ip, ifname)
            if idx is None:
                raise PlumbingError(f"{ifname} is missing in {ns}")
            have = {(str(a.get_attr("IFA_ADDRESS")), int(a["prefixlen"]))
                    for a in ip.get_addr(index=idx, family=2)}
            for address, prefix in sorted(have - wanted):
                ip.addr("del", index=idx, address=address, prefixlen=prefix)
            for address, prefix in sorted(wanted - have):
                ip.addr("add", index=idx, address=address, prefixlen=prefix)
    except NetlinkError as exc:
        raise PlumbingError(f"cannot set the addresses of {ns}/{ifname}: {exc}") from exc
