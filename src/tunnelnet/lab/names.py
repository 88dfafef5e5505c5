"""Names of everything a lab makes, derived from the topology in one place.

Namespaces start with ``tnl-`` so an operator can see at a glance what belongs to the lab;
device names stay within Linux's 15 characters.
"""

from __future__ import annotations

import zlib

UNDERLAY_NS = "tnl-underlay"
UNDERLAY_BRIDGE = "br-underlay"
UPLINK = "eth0"  # a hypervisor's interface on the underlay


def hypervisor_ns(name: str) -> str:
    return f"tnl-{name}"


def vm_ns(name: str) -> str:
    return f"tnl-vm-{name}"


def underlay_port(hypervisor: str) -> str:
    """The underlay switch's port towards a hypervisor (``ul-hv1``)."""
    return f"ul-{hypervisor}"[:15]


def vm_tap(vm: str) -> str:
    """The hypervisor side of a VM's vNIC. Short and stable: ``tap`` + 8 hex digits of a hash
    of the VM name, as Nova names taps after the port id."""
    return f"tap{zlib.crc32(vm.encode()):08x}"
