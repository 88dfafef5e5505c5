"""A vswitchd that keeps its configuration (--persist) killed with SIGKILL and started again:
its internal ports outlive it (as Open vSwitch's outlive ovs-vswitchd in the kernel
datapath) and are taken back with the host's address on them, and forwarding resumes with
the flows it had before any controller programs it. ip and ping are the judges."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from support.netns import lab, run
from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m

pytestmark = pytest.mark.netns


@pytest.fixture
def host() -> Iterator[tuple[dict[str, str], Vswitchd]]:
    """hv with a persistent vswitchd: a fail-secure br0 with vm1 (10.0.0.1) on a veth and
    an internal port mgmt0 (10.0.0.100) for the host, a NORMAL flow between them."""
    with lab() as made:
        ns = {"hv": made.netns(), "vm1": made.netns()}
        made.veth(ns["hv"], "tap1", ns["vm1"], "eth0")
        made.addr(ns["vm1"], "eth0", "10.0.0.1/24")
        sw = Vswitchd(ns["hv"], persist=True)
        try:
            sw.start()
            sw.vsctl("add-br", "br0", "fail_mode=secure")
            sw.vsctl("add-port", "br0", "tap1")
            sw.vsctl("add-port", "br0", "mgmt0", "type=internal")
            sw.ofctl("add-flow", "br0", "cookie=0x7,priority=1,actions=NORMAL")
            run(["ip", "addr", "add", "10.0.0.100/24", "dev", "mgmt0"], netns=ns["hv"])
            run(["ip", "link", "set", "mgmt0", "up"], netns=ns["hv"])
            yield ns, sw
        finally:
            sw.close()


def _ping(ns: dict[str, str]) -> int:
    return run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.100"], netns=ns["vm1"],
               check=False).returncode


def _mgmt0(ns: dict[str, str]) -> dict[str, object] | None:
    shown = run(["ip", "-j", "addr", "show", "mgmt0"], netns=ns["hv"], check=False)
    return json.loads(shown.stdout)[0] if shown.returncode == 0 else None


def test_a_killed_daemon_takes_its_internal_port_back_and_forwards_on_its_old_flows(
        host: tuple[dict[str, str], Vswitchd]) -> None:
    ns, sw = host
    assert _ping(ns) == 0
    flows = sw.ofctl("dump-flows", "br0", "--no-stats")
    number = {p["name"]: p["ofport"] for p in sw.call(m.ListPorts("br0"))}
    time.sleep(1.0)  # the flow snapshot follows a change within 0.5 s
    assert sw.stop(signal.SIGKILL) == -signal.SIGKILL
    left = _mgmt0(ns)
    assert left is not None, "the internal port went with the daemon"
    assert "10.0.0.100" in json.dumps(left["addr_info"])
    sw.start()
    # nothing but the daemon itself put these back: no controller runs here
    assert sw.ofctl("dump-flows", "br0", "--no-stats") == flows
    assert {p["name"]: p["ofport"] for p in sw.call(m.ListPorts("br0"))} == number
    assert _ping(ns) == 0


def test_a_clean_stop_or_a_deletion_still_removes_the_internal_port(
        host: tuple[dict[str, str], Vswitchd]) -> None:
    ns, sw = host
    sw.vsctl("del-port", "br0", "mgmt0")
    assert _mgmt0(ns) is None
    sw.vsctl("add-port", "br0", "mgmt1", "type=internal")
    assert sw.stop() == 0
    assert run(["ip", "link", "show", "mgmt1"], netns=ns["hv"], check=False).returncode != 0
