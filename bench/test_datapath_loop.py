"""Per-packet cost of the datapath's forwarding loop (run: make bench). Real bridges and patch
ports; the system ports record instead of sending, so this is the Python work per frame,
without syscalls. The ratio to the bare flow-key extraction shows how much the tables and the
loop add on top of parsing. The forwarding itself is tested by
tests/unit/datapath/test_datapath_forwarding.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from support.boards import switchboard, wire_int_tun
from support.vswitchd import RecordingPort
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.packet.flowkey import extract_flow_key

FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
              / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=5201)
              / (b"x" * 1300))
REPLY = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
              / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=5201, dport=40000))


@pytest.fixture
def board() -> Iterator[Switchboard]:
    with switchboard() as (made, _):
        yield made


def test_bench_flow_key_extraction_alone(benchmark: BenchmarkFixture) -> None:
    key = benchmark(extract_flow_key, FRAME, 1, None)
    assert key["tp_dst"] == 5201


def test_bench_forward_one_bridge_normal(benchmark: BenchmarkFixture, board: Switchboard
                                         ) -> None:
    board.add_bridge("br0")
    board.add_port("br0", "vm1", PortKind.SYSTEM)
    board.add_port("br0", "vm2", PortKind.SYSTEM)
    board.inject("vm2", REPLY)  # NORMAL learns vm2, so FRAME is unicast, not flooded
    benchmark(board.inject, "vm1", FRAME)
    vm2 = board.ports["vm2"]
    assert isinstance(vm2, RecordingPort) and vm2.sent[-1] == FRAME


def test_bench_forward_br_int_patch_br_tun(benchmark: BenchmarkFixture, board: Switchboard
                                           ) -> None:
    wire_int_tun(board, vm_tag=1)
    board.bridges["br-tun"].bridge.add_flows([
        "table=0,priority=1,in_port=1,actions=resubmit(,2)",
        "table=0,priority=1,in_port=2,actions=mod_vlan_vid:1,output:1",
        "table=2,priority=1,dl_vlan=1,actions=strip_vlan,set_tunnel:0x64,output:2",
    ])
    board.inject("uplink", REPLY)  # br-int learns the remote MAC behind the patch port
    benchmark(board.inject, "vm1", FRAME)
    uplink = board.ports["uplink"]
    assert isinstance(uplink, RecordingPort) and uplink.sent[-1] == FRAME
