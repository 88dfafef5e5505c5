"""The MTU doctor's namespace labs (tests/netns/topologies/mtu*.toml), as test_lab_mtu.py and
test_lab_mtu_ovs.py both bring them up: a VXLAN and a GRE network on a 1500-byte underlay,
guests that ignore the network's MTU, and an IPv6 address on each of the VXLAN pair.

The guests' NICs and the veths' host ends are set to 1500, as a guest that ignores the DHCP
MTU option sets its own (a tap would not limit the host end), so only the tunnel's MTU stands
between the sender and the underlay.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.lab_cli import lab_state, running_lab
from tunnelnet.client.http import Client

# (client VM, server VM, Neutron's network MTU over a 1500-byte underlay: VXLAN takes 50
# bytes of overhead, GRE 42)
PAIRS = {"vxlan": ("vx1", "vx2", 1500 - 50), "gre": ("gre1", "gre2", 1500 - 42)}
V6 = {"vx1": "fd00:4::11", "vx2": "fd00:4::12"}


def in_netns(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """ARGV inside namespace NS, its output captured and its failure left to the caller."""
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def vm_netns(lab_dir: Path, vm: str) -> str:
    return str(lab_state(lab_dir)["vms"][vm]["netns"])


@contextmanager
def mtu_lab(prefix: str, topology: Path, directory: Path) -> Iterator[Path]:
    """The lab up for the block, its guests ignoring the MTU and the VXLAN pair reaching each
    other over IPv6; down (and checked gone) after it."""
    with running_lab(prefix, topology, directory):
        state = lab_state(directory)
        for vm in state["vms"].values():
            hv = state["hypervisors"][vm["hypervisor"]]
            for ns, dev in ((vm["netns"], "eth0"), (hv["netns"], vm["tap"])):
                assert in_netns(ns, "ip", "link", "set", dev, "mtu", "1500").returncode == 0

        with Client(state["server_url"], state["admin_token"]) as api:
            for name, address in V6.items():
                ns = state["vms"][name]["netns"]
                added = in_netns(ns, "ip", "-6", "addr", "add", f"{address}/64", "dev", "eth0",
                                 "nodad")
                assert added.returncode == 0, added.stderr
                # an address the port does not own is spoofing to port security: declared
                # as an allowed address pair, as a user adding one by hand must
                api.update("port", state["vms"][name]["port_id"],
                           allowed_address_pairs=[{"ip_address": address}])
        first = state["vms"]["vx1"]["netns"]
        assert any(in_netns(first, "ping", "-6", "-c", "1", "-W", "1", V6["vx2"]).returncode == 0
                   for _ in range(20)), "the pairs' flows never let IPv6 through"
        yield directory
