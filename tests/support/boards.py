"""In-process switchboards for the unit tests, fuzz targets and benchmarks of the forwarding
loop: real bridges and patch ports, system ports that record what they are given (no root).

``wire_int_tun`` builds the agent's two bridges in small, as Neutron's OVS agent lays them
out: br-int with one VM on an access VLAN, patched to br-tun, whose uplink stands for the
tunnels. Each user adds the flows it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from support.vswitchd import recording_ports
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import PortFactory, Switchboard


@contextmanager
def switchboard(port_factory: PortFactory = recording_ports
                ) -> Iterator[tuple[Switchboard, EventLoop]]:
    """A switchboard on an event loop of its own; both closed after the block."""
    loop = EventLoop()
    board = Switchboard(loop, port_factory=port_factory)
    try:
        yield board, loop
    finally:
        board.close()
        loop.close()


def wire_int_tun(board: Switchboard, vm_tag: int) -> None:
    """br-int: ``vm1`` on access VLAN ``vm_tag`` and ``patch-tun``; br-tun (fail mode
    secure): ``patch-int`` as ofport 1 and the system port ``uplink`` as ofport 2."""
    board.add_bridge("br-int")
    board.add_port("br-int", "vm1", PortKind.SYSTEM, tag=vm_tag)
    board.add_port("br-int", "patch-tun", PortKind.PATCH, options={"peer": "patch-int"})
    board.add_bridge("br-tun", "secure")
    board.add_port("br-tun", "patch-int", PortKind.PATCH, ofport=1,
                   options={"peer": "patch-tun"})
    board.add_port("br-tun", "uplink", PortKind.SYSTEM, ofport=2)
