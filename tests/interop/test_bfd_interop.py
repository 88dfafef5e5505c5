"""BFD across a tunnel between tunnelnet's vswitchd and an independent implementation: Open
vSwitch 3.1's userspace datapath with ``bfd:enable=true`` on its tunnel port (its own lib/bfd.c
judges our packets and we judge its), and between two tunnelnet daemons. Both sides must reach
"up", both must see "down" within the detection time when the underlay bridge stops carrying
the path (the hypervisor's bridge port set to "disabled": a drop on the underlay bridge, with
every link still up), and both must come back when it carries it again.

The measured detection times are printed (pytest -s); the bound asserted is generous (the
machine is shared): a detection time of 3 x 100 ms plus at most one transmit interval, plus the
time it takes to ask each side, well under 1.5 s; without BFD's detection a side would stay up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from support.netns import lab, run, two_hypervisors
from support.ovs import OvsSwitch
from support.tools import require_tool
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m

pytestmark = [pytest.mark.netns, pytest.mark.interop]

INTERVAL_MS = 100
BFD = ["bfd:enable=true", f"bfd:min_tx={INTERVAL_MS}", f"bfd:min_rx={INTERVAL_MS}"]
DETECTION_BOUND = 1.5  # seconds: 300 ms detection + a transmit interval + asking, loaded CI
STEADY = 2.0  # seconds after both are up: a 1 s transmit interval scheduled before has run
UP_TIMEOUT = 20.0  # not-Up sessions send once a second (RFC 5880 6.8.3): a few round trips


@dataclass
class Side:
    name: str
    state: Callable[[], str]


def _ours(sw: Vswitchd, port: str) -> Callable[[], str]:
    def state() -> str:  # the control socket: a CLI process a question would blur the timing
        return str(sw.call(m.BfdShow(port))[port]["state"])
    return state


def _ovs_state(ovs: OvsSwitch, port: str) -> Callable[[], str]:
    def state() -> str:
        # bfd/show reads the session itself (the database's bfd_status lags behind it)
        for line in ovs.appctl("bfd/show", port).splitlines():
            if line.strip().startswith("Local Session State:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"Open vSwitch's bfd/show has no state for {port}")
    return state


def _wait(sides: list[Side], wanted: str, timeout: float) -> dict[str, float]:
    """Seconds until each side shows ``wanted``, asked in turn every few milliseconds."""
    start = time.monotonic()
    reached: dict[str, float] = {}
    while len(reached) < len(sides):
        for side in sides:
            if side.name not in reached and side.state() == wanted:
                reached[side.name] = time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < timeout, f"not {wanted} after {elapsed:.1f} s: " + ", ".join(
            f"{s.name} {s.state()}" for s in sides)
        time.sleep(0.005)
    return reached


def _underlay(ns: dict[str, str], port: str, carries: bool) -> None:
    """The underlay bridge's port towards a hypervisor: forwarding, or disabled (drops all)."""
    run(["bridge", "-n", ns["ul"], "link", "set", "dev", port, "state",
         "3" if carries else "0"])


def _cycle(ns: dict[str, str], sides: list[Side], label: str) -> None:
    up = _wait(sides, "up", UP_TIMEOUT)
    # steady state: until each side has heard the other's packets at the Up rate, its
    # detection time still follows the one-second rate announced while not Up (6.8.3)
    time.sleep(STEADY)
    _underlay(ns, "ul2", carries=False)
    try:
        down = _wait(sides, "down", DETECTION_BOUND * 2)
    finally:
        _underlay(ns, "ul2", carries=True)
    back = _wait(sides, "up", UP_TIMEOUT)
    print(f"\nBFD {label}: up after " + ", ".join(f"{k} {v:.2f} s" for k, v in up.items())
          + "; path cut -> down after " + ", ".join(f"{k} {v * 1000:.0f} ms"
                                                      for k, v in down.items())
          + "; restored -> up after " + ", ".join(f"{k} {v:.2f} s" for k, v in back.items()))
    for name, seconds in down.items():
        assert seconds < DETECTION_BOUND, f"{name} took {seconds:.2f} s to see the cut"


@pytest.fixture
def hypervisors() -> Iterator[dict[str, str]]:
    with lab() as made:
        yield two_hypervisors(made)


def _our_tunnel(ns: str, remote: str) -> Vswitchd:
    sw = Vswitchd(ns)
    sw.start()
    sw.vsctl("add-br", "br-tun", "fail_mode=secure")
    sw.vsctl("add-port", "br-tun", "vxlan-peer", "type=vxlan",
             f"options:remote_ip={remote}", "options:key=flow", *BFD)
    return sw


def test_bfd_with_open_vswitch_comes_up_detects_a_cut_path_and_recovers(
        hypervisors: dict[str, str]) -> None:
    require_tool("ovs-vswitchd")
    ns = hypervisors
    ours = _our_tunnel(ns["hv1"], "192.0.2.2")
    try:
        with OvsSwitch(netns=ns["hv2"]) as ovs:
            ovs.add_bridge("br-phy")
            run(["ip", "addr", "flush", "dev", "eth0"], netns=ns["hv2"])
            ovs.add_port("br-phy", "eth0")
            run(["ip", "addr", "add", "192.0.2.2/24", "dev", "br-phy"], netns=ns["hv2"])
            run(["ip", "link", "set", "br-phy", "up"], netns=ns["hv2"])
            ovs.add_bridge("br-tun", fail_mode="secure")
            ovs.add_port("br-tun", "vxlan-peer", type="vxlan",
                         options={"remote_ip": "192.0.2.1", "key": "flow"})
            ovs.vsctl("set", "Interface", "vxlan-peer", *BFD)
            # Open vSwitch's native tunnelling needs its route and neighbour towards hv1
            deadline = time.monotonic() + 15
            while run(["ping", "-c1", "-W1", "192.0.2.1"], netns=ns["hv2"],
                      check=False).returncode != 0:
                assert time.monotonic() < deadline, "br-phy never reached hypervisor 1"
            sides = [Side("tunnelnet", _ours(ours, "vxlan-peer")),
                     Side("openvswitch", _ovs_state(ovs, "vxlan-peer"))]
            _cycle(ns, sides, "tunnelnet<->Open vSwitch")
            status = ovs.vsctl("get", "Interface", "vxlan-peer", "bfd_status")
            assert 'forwarding="true"' in status
    finally:
        ours.close()


def test_bfd_between_two_tunnelnet_daemons_comes_up_detects_a_cut_and_recovers(
        hypervisors: dict[str, str]) -> None:
    ns = hypervisors
    one = _our_tunnel(ns["hv1"], "192.0.2.2")
    try:
        two = _our_tunnel(ns["hv2"], "192.0.2.1")
        try:
            sides = [Side("hv1", _ours(one, "vxlan-peer")), Side("hv2", _ours(two, "vxlan-peer"))]
            _cycle(ns, sides, "tunnelnet<->tunnelnet")
            shown = one.vsctl("show")
            assert json.loads(one.ofctl("bfd-show", "--json"))["vxlan-peer"]["state"] == "up"
            assert "bfd_status: {" in shown and "state=up" in shown
            listed = json.loads(one.vsctl("list", "interface", "vxlan-peer", "--json"))
            assert listed[0]["bfd"] == {"enable": "true", "min_tx": "100", "min_rx": "100"}
            assert listed[0]["bfd_status"]["forwarding"] == "true"
            assert listed[0]["bfd_status"]["flap_count"] == "3"  # up, down, up
        finally:
            two.close()
    finally:
        one.close()
