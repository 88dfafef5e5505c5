"""Names of everything a lab makes, derived from the topology in one place.

Namespaces start with ``tnl-`` so an operator can see at a glance what belongs to the lab;
device names stay within Linux's 15 characters. ``TUNNELNET_LAB_PREFIX`` changes the prefix,
so that two labs (a developer's and a test's) can be up side by side.
"""

from __future__ import annotations

import os

PREFIX = os.environ.get("TUNNELNET_LAB_PREFIX", "tnl")
UNDERLAY_NS = f"{PREFIX}-underlay"
UNDERLAY_BRIDGE = "br-underlay"
UPLINK = "eth0"  # a hypervisor's interface on the underlay
PHYSICAL_UPLINK = "eth1"  # its second interface, for VLAN and flat networks


def hypervisor_ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def vm_ns(name: str) -> str:
    return f"{PREFIX}-vm-{name}"


def underlay_port(hypervisor: str) -> str:
    """The underlay switch's port towards a hypervisor (``ul-hv1``)."""
    return f"ul-{hypervisor}"[:15]


NOVA_NIC_NAME_LEN = 14  # nova.network.model.NIC_NAME_LEN


def vm_tap(port_id: str) -> str:
    """The hypervisor side of a VM's vNIC, named as Nova names it after the VM's port:
    ``tap`` + the first 11 characters of the port id (``tap1b2c3d4e-5f``), so that
    ``vsctl show`` and ``lab status`` map onto ``port list``."""
    return f"tap{port_id}"[:NOVA_NIC_NAME_LEN]


def physical_port(hypervisor: str) -> str:
    """The switch's port towards a hypervisor's second uplink (``ulp-hv1``)."""
    return f"ulp-{hypervisor}"[:15]


def physical_bridge() -> str:
    """The hypervisor's bridge for the physical networks (all physnets share the one
    uplink in the lab), as an operator would name it after the interface."""
    return "br-eth1"


# -- the management network of a clustered control plane ([control] store = "etcd") --------

MGMT_NS = f"{PREFIX}-mgmt"  # etcd members and controllers live here
MGMT_BRIDGE = "br-mgmt"
MGMT_UPLINK = "mgmt0"  # a hypervisor's interface on the management network


def mgmt_port(hypervisor: str) -> str:
    """The management switch's port towards a hypervisor (``mg-hv1``)."""
    return f"mg-{hypervisor}"[:15]


def etcd_member(index: int) -> str:
    return f"etcd-{index}"


def controller(index: int) -> str:
    return f"controller-{index}"
