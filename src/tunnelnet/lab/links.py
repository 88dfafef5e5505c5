"""Namespaces, veths, bridges and addresses for the lab, through netlink (pyroute2).

Each call does one thing and tolerates only the one error that means "already so"
(EEXIST on create, ENOENT on delete), so a retried ``lab up`` or ``lab down`` converges.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Sequence

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from tunnelnet.errors import TunnelnetError


class LinkError(TunnelnetError):
    """A netlink request for the lab failed."""


def _ipr(ns: str | None) -> IPRoute:
    return IPRoute(netns=ns) if ns else IPRoute()


def create_netns(name: str, *, ipv6: bool = True) -> None:
    try:
        netns.create(name)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise LinkError(f"cannot create namespace {name}: {exc.strerror}") from exc
    if not ipv6:
        for scope in ("all", "default"):
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw",
                            f"net.ipv6.conf.{scope}.disable_ipv6=1"],
                           capture_output=True, timeout=10, check=False)
    with _ipr(name) as ip:
        ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")


def delete_netns(name: str) -> None:
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise LinkError(f"cannot remove namespace {name}: {exc.strerror}") from exc


def list_netns() -> list[str]:
    return list(netns.listnetns())


def _index(ip: IPRoute, ifname: str, ns: str | None) -> int:
    found = ip.link_lookup(ifname=ifname)
    if not found:
        raise LinkError(f"no interface {ifname} in namespace {ns or '(root)'}")
    return int(found[0])


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, *, mtu: int | None = None) -> None:
    """A veth pair with one end in each namespace, both up (made in ns_a, peer moved)."""
    try:
        with _ipr(ns_a) as ip:
            ip.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
            idx = _index(ip, if_a, ns_a)
            if mtu:
                ip.link("set", index=idx, mtu=mtu)
            ip.link("set", index=idx, state="up")
        with _ipr(ns_b) as ip:
            idx = _index(ip, if_b, ns_b)
            if mtu:
                ip.link("set", index=idx, mtu=mtu)
            ip.link("set", index=idx, state="up")
    except NetlinkError as exc:
        raise LinkError(f"cannot make veth {ns_a}/{if_a} <-> {ns_b}/{if_b}: {exc}") from exc


def move_link(ns_from: str, ifname: str, ns_to: str) -> None:
    """Move IFNAME from one namespace to another and bring it up there. The kernel takes a
    moved device down and keeps its name, MAC, MTU and offloads; a veth's peer keeps its
    end (the VM's eth0 only sees its carrier go and come back)."""
    try:
        with _ipr(ns_from) as ip:
            ip.link("set", index=_index(ip, ifname, ns_from), net_ns_fd=ns_to)
        with _ipr(ns_to) as ip:
            ip.link("set", index=_index(ip, ifname, ns_to), state="up")
    except NetlinkError as exc:
        raise LinkError(f"cannot move {ifname} from {ns_from} to {ns_to}: {exc}") from exc


def add_address(ns: str, ifname: str, address: str, prefixlen: int) -> None:
    try:
        with _ipr(ns) as ip:
            ip.addr("add", index=_index(ip, ifname, ns), address=address, prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise LinkError(f"cannot add {address}/{prefixlen} to {ns}/{ifname}: {exc}") from exc


def add_default_route(ns: str, gateway: str) -> None:
    try:
        with _ipr(ns) as ip:
            ip.route("add", dst="0.0.0.0/0", gateway=gateway)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise LinkError(f"cannot add default route via {gateway} in {ns}: {exc}") from exc


def bridge(ns: str, name: str, members: Sequence[str] = ()) -> None:
    try:
        with _ipr(ns) as ip:
            try:
                ip.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            idx = _index(ip, name, ns)
            ip.link("set", index=idx, state="up")
            for member in members:
                ip.link("set", index=_index(ip, member, ns), master=idx)
    except NetlinkError as exc:
        raise LinkError(f"cannot make bridge {name} in {ns}: {exc}") from exc


def set_mac(ns: str, ifname: str, mac: str) -> None:
    with _ipr(ns) as ip:
        idx = _index(ip, ifname, ns)
        ip.link("set", index=idx, state="down")
        ip.link("set", index=idx, address=mac)
        ip.link("set", index=idx, state="up")


def set_mtu(ns: str, ifname: str, mtu: int) -> None:
    with _ipr(ns) as ip:
        ip.link("set", index=_index(ip, ifname, ns), mtu=mtu)


def offloads_off(ns: str, ifname: str) -> None:
    """Userspace switches see raw frames: no partial checksums, no GSO super-frames."""
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "tso",
                    "off", "gso", "off"], capture_output=True, timeout=10, check=False)


def gro_on(ns: str, ifname: str) -> None:
    """Generic receive offload on, as a NIC has it (a veth has it off by default)."""
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "gro", "on"],
                   capture_output=True, timeout=10, check=False)


def link_names(ns: str) -> list[str]:
    with _ipr(ns) as ip:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ip.get_links()]


def bridge_vlan_filtering(ns: str, name: str) -> bool:
    """Turn on per-port VLAN filtering of a Linux bridge; False where the kernel lacks it."""
    proc = subprocess.run(["ip", "-n", ns, "link", "set", name, "type", "bridge",
                           "vlan_filtering", "1"], capture_output=True, timeout=10,
                          check=False)
    return proc.returncode == 0
