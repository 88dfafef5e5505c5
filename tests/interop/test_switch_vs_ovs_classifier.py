"""The classifier against Open vSwitch's: many masked flows in one table, many packets.

A table of up to 60 flows, each matching one to three fields under arbitrary bit masks
(registers, metadata, tun_id, dl_dst, nw_dst with non-CIDR masks, tp_dst, vlan_tci), every
flow with its own priority, so the flow OVS picks for a packet is named by its priority alone.
Values are sometimes given with bits outside their mask (both switches must drop those bits)
and a mask may be 0 (a wildcard). Packets take their field values from the same small pools,
with bits flipped, so that they fall on both sides of many masks. For each packet the priority
of the matched flow (or the miss) must be OVS's; the two dumps must be equal (mask printing).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ovs import OvsSwitch
from support.ovs_diff import ours_visited
from support.ovs_packets import Pkt, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-cls"
EXAMPLES = int(os.environ.get("TUNNELNET_OVS_DIFF_EXAMPLES", "15"))

# field -> (width in bits, pool of values)
POOLS: dict[str, tuple[int, tuple[int, ...]]] = {
    "reg0": (32, (0x0, 0x5, 0xA5, 0x12345678, 0xFFFFFFFF)),
    "reg3": (32, (0x0, 0x1, 0x80000001)),
    "metadata": (64, (0x0, 0x1, 0xDEADBEEF00000000, 0xFF)),
    "tun_id": (64, (0x0, 0x64, 0x3E9, 0x1000064)),
    "dl_dst": (48, (0xFA163E000001, 0xFA163E000002, 0xFFFFFFFFFFFF, 0x01005E0000FB)),
    "nw_dst": (32, (0x0A000002, 0x0A000102, 0xC0A80001)),
    "tp_dst": (16, (22, 80, 443, 8080)),
    "vlan_tci": (16, (0x0000, 0x1001, 0x1002, 0x1FFF)),
}
FIXED_MASKS: dict[int, tuple[int, ...]] = {
    bits: (
        (1 << bits) - 1,
        0xFF,
        0xF0,
        ((1 << bits) - 1) ^ 0xFF,
        1 << (bits - 1),
        0x0,
    )
    for bits in {w for w, _ in POOLS.values()}
}


def render(name: str, value: int, mask: int) -> str:
    bits = POOLS[name][0]
    full = mask == (1 << bits) - 1
    if name == "dl_dst":
        text = _mac(value) if full else f"{_mac(value)}/{_mac(mask)}"
    elif name == "nw_dst":
        addr = ipaddress.IPv4Address(value)
        text = str(addr) if full else f"{addr}/{ipaddress.IPv4Address(mask)}"
    else:
        text = f"{value:#x}" if full else f"{value:#x}/{mask:#x}"
    return f"{name}={text}"


def _mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


@st.composite
def flow_table(draw: st.DrawFn) -> list[str]:
    count = draw(st.integers(1, 60))
    priorities = draw(st.lists(st.integers(1, 65535), min_size=count, max_size=count, unique=True))
    flows = []
    for priority in priorities:
        names = draw(st.lists(st.sampled_from(sorted(POOLS)), min_size=1, max_size=3, unique=True))
        parts = []
        for name in names:
            bits, pool = POOLS[name]
            mask = draw(
                st.one_of(
                    st.sampled_from(FIXED_MASKS[bits]),
                    st.integers(0, (1 << bits) - 1),
                )
            )
            value = draw(st.sampled_from(pool))
            if draw(st.integers(0, 2)) != 0:
                value &= mask  # usually canonical; sometimes with stray bits to be dropped
            parts.append(render(name, value, mask))
        if any(n in ("nw_dst", "tp_dst") for n in names):
            parts.insert(0, "tcp")
        port = draw(st.sampled_from((2, 3)))
        flows.append(f"priority={priority},{','.join(parts)} actions=output:{port}")
    return flows


def _flip(draw: st.DrawFn, value: int, bits: int) -> int:
    if draw(st.integers(0, 2)) == 0:
        return value ^ (1 << draw(st.integers(0, bits - 1)))
    return value


@st.composite
def packet(draw: st.DrawFn) -> Pkt:
    vals = {}
    for name, (bits, pool) in POOLS.items():
        vals[name] = _flip(draw, draw(st.sampled_from(pool)), bits)
    tci = vals["vlan_tci"]
    vlan = (tci & 0x0FFF) if tci & 0x1000 else None
    base = tcp(
        1,
        "fa:16:3e:00:00:09",
        _mac(vals["dl_dst"]),
        nw_dst=str(ipaddress.IPv4Address(vals["nw_dst"])),
        tp_dst=vals["tp_dst"],
        vlan=vlan,
        tun_id=vals["tun_id"],
        label="packet",
    )
    meta = {"metadata": vals["metadata"], "reg0": vals["reg0"], "reg3": vals["reg3"]}
    return replace(base, meta=meta)


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in (1, 2, 3):
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(flows=flow_table(), packets=st.lists(packet(), min_size=5, max_size=30))
def test_masked_lookups_pick_the_flow_ovs_picks(
    ovs: OvsSwitch, flows: list[str], packets: list[Pkt]
) -> None:
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, flows)
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in (1, 2, 3):
        bridge.add_port(f"p{port}", port)
    bridge.add_flows(flows)
    problems: list[str] = []
    ours_dump, theirs_dump = set(bridge.dump_flows(stats=False)), set(ovs.dump_flows(BRIDGE))
    if ours_dump != theirs_dump:
        problems.append(
            f"dump: only in OVS {sorted(theirs_dump - ours_dump)}, "
            f"only in ours {sorted(ours_dump - theirs_dump)}"
        )
    for pkt in packets:
        theirs = ovs.trace(BRIDGE, pkt.flow_text()).visited
        ours = ours_visited(bridge.trace(pkt.flow_text()))
        if ours != theirs:
            problems.append(f"{pkt}: OVS {theirs} ours {ours}")
    assert not problems, "flows:\n" + "\n".join(flows) + "\n\n" + "\n".join(problems)
