"""Flow timeouts against Open vSwitch: which flows expire, and that traffic keeps one alive.

Four flows: one with hard_timeout=1, one with idle_timeout=1 and no traffic, one with
idle_timeout=4 that a real frame hits every half second (through OVS's datapath), one without
timeouts. OVS runs in real time and is polled (bounded) until it has removed what it removes;
ours runs the same schedule on a fake clock with `expire()`. The flows left must be the same:
the two short ones gone, the busy one and the permanent one kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from support.ovs import OvsSwitch
from support.tools import require_tool
from tunnelnet.switch import Bridge

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-time"
FLOWS = [
    "priority=10,in_port=1,dl_dst=fa:16:3e:00:00:0a,hard_timeout=1 actions=output:2",
    "priority=10,in_port=1,dl_dst=fa:16:3e:00:00:0b,idle_timeout=1 actions=output:2",
    "priority=10,in_port=1,dl_dst=fa:16:3e:00:00:0c,idle_timeout=4 actions=output:2",
    "priority=1 actions=drop",
]
# An Ethernet frame to fa:16:3e:00:00:0c (the busy flow), as hex for netdev-dummy/receive.
BUSY_FRAME = "fa163e00000c" + "fa163e000001" + "88b5" + "00" * 46
_VOLATILE = re.compile(r"(duration=[0-9.]+s|idle_age=\d+|hard_age=\d+|n_packets=\d+|n_bytes=\d+), ")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in (1, 2):
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


def _stable(lines: list[str]) -> set[str]:
    return {_VOLATILE.sub("", line) for line in lines}


def test_timeouts_expire_the_same_flows_as_ovs(ovs: OvsSwitch) -> None:
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, FLOWS)
    clock = FakeClock()
    bridge = Bridge(BRIDGE, fail_mode="secure", clock=clock)
    for port in (1, 2):
        bridge.add_port(f"p{port}", port)
    bridge.add_flows(FLOWS)
    busy_key = {
        "in_port": 1,
        "tun_id": 0,
        "vlan_tci": 0,
        "dl_src": 0xFA163E000001,
        "dl_dst": 0xFA163E00000C,
        "dl_type": 0x88B5,
    }
    # OVS: real time, a frame for the busy flow every 0.5 s, until both short flows are gone
    # (OVS looks at timeouts about once a second), within a bound.
    start = time.monotonic()
    while True:
        ovs.appctl("netdev-dummy/receive", "p1", BUSY_FRAME)
        left = "\n".join(ovs.dump_flows(BRIDGE))
        short_gone = "00:00:0a" not in left and "00:00:0b" not in left
        elapsed = time.monotonic() - start
        if short_gone and elapsed >= 2.0:
            break
        assert elapsed < 8.0, f"OVS kept the short flows for 8 s: {left}"
        time.sleep(0.5)
    # Ours: the same schedule on the fake clock.
    steps = int(elapsed / 0.5) + 1
    for _ in range(steps):
        bridge.process(dict(busy_key), 64)
        clock.now += 0.5
        bridge.expire()
    theirs = _stable(ovs.dump_flows(BRIDGE, no_stats=False))
    ours = _stable(bridge.dump_flows(stats=True))
    assert ours == theirs
    assert any("00:00:0c" in line for line in ours)  # the busy flow lived on in both
