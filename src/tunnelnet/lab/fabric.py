"""The lab's wiring: underlay switch, hypervisors on it, VMs behind their hypervisors.

Only namespaces and links; the processes (controller, vswitchd, agents) are started by
:mod:`tunnelnet.lab.runner`. Every namespace is recorded through ``record`` before it is
filled, so ``lab down`` can remove it even if building stops half-way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Network

from tunnelnet.lab import links, names
from tunnelnet.lab.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_MTU = 1500  # an Ethernet interface's before anything says otherwise


def build_underlay(topo: Topology, record: Callable[[str], None]) -> None:
    """A Linux bridge in its own namespace, one port per hypervisor with its underlay IP."""
    # The underlay runs IPv4 only: the kernel's own IPv6 chatter (router and neighbour
    # solicitations, MLD) would otherwise share the wire with the tunnels, and a capture of
    # the underlay should show nothing but VXLAN, GRE and ARP between hypervisors.
    record(names.UNDERLAY_NS)
    links.create_netns(names.UNDERLAY_NS, ipv6=False)
    links.bridge(names.UNDERLAY_NS, names.UNDERLAY_BRIDGE)
    prefix = IPv4Network(topo.underlay_cidr).prefixlen
    for hv in topo.hypervisors:
        ns = names.hypervisor_ns(hv.name)
        record(ns)
        links.create_netns(ns, ipv6=False)
        links.veth(names.UNDERLAY_NS, names.underlay_port(hv.name), ns, names.UPLINK,
                   mtu=topo.underlay_mtu)
        links.bridge(names.UNDERLAY_NS, names.UNDERLAY_BRIDGE, [names.underlay_port(hv.name)])
        links.add_address(ns, names.UPLINK, hv.ip, prefix)
        if hv.switch != "ovs":
            # a physical NIC does GRO by default, a veth not: our tunnel sockets then get
            # batches of datagrams (datapath/tunnel.py); Open vSwitch's AF_PACKET reads the
            # uplink frame by frame, so its hypervisors keep the veth's default
            links.gro_on(ns, names.UPLINK)
        log.info("hypervisor %s: %s/%d on the underlay", hv.name, hv.ip, prefix)


def build_vm(vm_name: str, hypervisor: str, record: Callable[[str], None], *, port_id: str,
             mtu: int, ip: str | None, prefixlen: int, mac: str, gateway: str | None = None,
             offloads: bool = True) -> str:
    """A VM namespace whose eth0 is the far end of a tap-like veth on its hypervisor.

    The VM's MAC is the one the controller gave its port (as Nova sets it), and its MTU the
    network's, so that tunnel overhead never leads to silent drops. ``ip`` None: the VM will
    ask DHCP, so its eth0 starts with no address and a plain Ethernet MTU of 1500 (the
    hypervisor's tap has the network's MTU, as Nova sets it); the lease sets both.
    ``offloads``: the VM keeps checksum and segmentation offloads, as a guest's virtio-net
    negotiates them with a tunnelnet vswitchd (which takes TSO super-frames whole); Open
    vSwitch 3.1's userspace datapath cannot, so its VMs send frame by frame. Returns the tap
    name, which Nova derives from the port's id.
    """
    ns = names.vm_ns(vm_name)
    tap = names.vm_tap(port_id)
    record(ns)
    links.create_netns(ns)
    links.veth(names.hypervisor_ns(hypervisor), tap, ns, "eth0", mtu=mtu)
    links.set_mac(ns, "eth0", mac)
    if ip is None:
        links.set_mtu(ns, "eth0", DEFAULT_MTU)
    else:
        links.add_address(ns, "eth0", ip, prefixlen)
    if gateway:
        links.add_default_route(ns, gateway)
    if not offloads:
        links.offloads_off(ns, "eth0")
        links.offloads_off(names.hypervisor_ns(hypervisor), tap)
    return tap


def teardown(namespaces: list[str]) -> list[str]:
    """Remove the given namespaces (their veths go with them); returns any left behind."""
    for ns in reversed(namespaces):
        links.delete_netns(ns)
    present = set(links.list_netns())
    return [ns for ns in namespaces if ns in present]
