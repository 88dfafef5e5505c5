"""`tunnelnet trace` through a mixed lab: hv2 runs Open vSwitch (userspace datapath) under
the same agent, the others our vswitchd.

On hv2 every step comes from Open vSwitch's own `ofproto/trace` and counters from
`ovs-ofctl dump-flows`, so the journey's path through Neutron's tables (0 -> 4|3 -> 10 in,
0 -> 2 -> 20 out) is judged by an implementation that is not ours, and `--live` holds both
switches to the wire. Open vSwitch picks its own VXLAN source port (32768-61000 by default,
netdev-native-tnl.c), which the trace leaves open and tshark reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tools import require_tool
from support.trace_lab import DEMO, SEGMENT, VM, path_of, trace, trace_lab, tshark_fields

pytestmark = pytest.mark.netns

OVS_HOST = "hv2"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("ovslab")
    topology = directory / "mixed.toml"
    text = DEMO.read_text()
    marker = 'name = "hv2"\nip = "192.0.2.12"\n'
    assert marker in text
    topology.write_text(text.replace(marker, marker + 'switch = "ovs"\n'))
    with trace_lab(topology, directory):
        yield directory


def test_into_open_vswitch_over_vxlan_its_own_trace_shows_tables_0_4_10(
        lab_dir: Path, tmp_path: Path) -> None:
    assert VM["red3"]["hypervisor"] == OVS_HOST
    j = trace(lab_dir, "red1", "red3", "--live", "--evidence", str(tmp_path))
    path = path_of(j)
    assert path[2] == (OVS_HOST, "br-tun", [0, 4, 10])
    assert path[3][:2] == (OVS_HOST, "br-int")
    assert j["outcome"]["delivered"]
    assert j["live"]["ok"], j["live"]["failures"]
    ovs_flows = [f for f in j["live"]["flows"] if f["host"] == OVS_HOST]
    assert ovs_flows and all(f["rose"] for f in ovs_flows)


@pytest.mark.parametrize("src,dst,kind", [("red3", "red1", "vxlan"), ("blue3", "blue2", "gre")])
def test_out_of_open_vswitch_the_wire_carries_the_predicted_outer_header(
        lab_dir: Path, tmp_path: Path, src: str, dst: str, kind: str) -> None:
    assert VM[src]["hypervisor"] == OVS_HOST
    j = trace(lab_dir, src, dst, "--live", "--evidence", str(tmp_path))
    path = path_of(j)
    assert path[1] == (OVS_HOST, "br-tun", [0, 2, 20])
    assert path[2][2] == [0, 4 if kind == "vxlan" else 3, 10]
    (enc,) = j["encapsulation"]
    assert enc["type"] == kind and enc["key"] == SEGMENT[VM[src]["network"]]
    assert j["outcome"]["delivered"]
    assert j["live"]["ok"], j["live"]["failures"]
    if kind == "vxlan":
        assert enc["udp_src"] is None  # Open vSwitch's choice, not predicted
        rows = tshark_fields(j["live"]["evidence"][f"underlay-{OVS_HOST}"], "udp.srcport",
                             "vxlan.vni", display=f"icmp.type == 8 && ip.dst == "
                                                  f"{VM[dst]['ip']}")
        assert len(rows) == 1
        sport, vni = rows[0]
        assert 32768 <= int(sport) <= 61000 and int(vni) == SEGMENT["red-net"]
        assert j["live"]["underlay"][0]["observed_udp_src"] == int(sport)
    state = json.loads((lab_dir / "state.json").read_text())
    assert state["hypervisors"][OVS_HOST]["switch"] == "ovs"
