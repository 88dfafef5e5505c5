"""The forwarding loop through real bridges (tunnelnet.switch) and real patch ports; only the
system ports are in-memory stand-ins that record what they are given (no root needed here).
Expected frames are judged with scapy, never with our own codec."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether

from support.boards import switchboard, wire_int_tun
from support.vswitchd import RecordingPort
from tunnelnet.datapath import tunnel_rx
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import MAX_PATCH_DEPTH, Switchboard

VM1, VM2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


@pytest.fixture
def board() -> Iterator[Switchboard]:
    with switchboard() as (made, _):
        yield made


def _sent(board: Switchboard, name: str) -> list[bytes]:
    port = board.ports[name]
    assert isinstance(port, RecordingPort)
    return port.sent


def _frame(src: str = VM1, dst: str = VM2) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


def test_access_port_frame_crosses_patch_tagged_and_leaves_as_the_flows_say(
        board: Switchboard) -> None:
    wire_int_tun(board, vm_tag=5)
    board.bridges["br-tun"].bridge.add_flows([
        "table=0,priority=1,in_port=1,dl_vlan=5,actions=mod_vlan_vid:77,output:2",
    ])
    board.inject("vm1", _frame())
    out = _sent(board, "uplink")
    assert len(out) == 1
    got = Ether(out[0])
    # NORMAL put the access port's VLAN 5 on the trunk (the patch port); br-tun rewrote it
    assert got[Dot1Q].vlan == 77
    assert got.src == VM1 and got.dst == VM2
    assert bytes(got[IP]) == bytes(Ether(_frame())[IP])  # the payload is untouched
    assert board.ports["patch-tun"].stats.tx_packets == 1
    assert board.ports["patch-int"].stats.rx_packets == 1


def test_frame_from_the_trunk_reaches_the_access_port_untagged(board: Switchboard) -> None:
    wire_int_tun(board, vm_tag=5)
    board.bridges["br-tun"].bridge.add_flows([
        "table=0,priority=1,in_port=2,actions=mod_vlan_vid:5,output:1",
    ])
    board.inject("uplink", _frame(src=VM2, dst=VM1))
    (frame,) = _sent(board, "vm1")
    assert Dot1Q not in Ether(frame)
    assert frame == _frame(src=VM2, dst=VM1)


def test_crossing_a_patch_port_clears_tunnel_id_as_open_vswitch_does(
        board: Switchboard) -> None:
    wire_int_tun(board, vm_tag=5)
    board.add_port("br-int", "vm2", PortKind.SYSTEM, ofport=10)
    board.add_port("br-int", "vm3", PortKind.SYSTEM, ofport=11)
    board.bridges["br-tun"].bridge.add_flows(
        ["table=0,priority=1,in_port=2,actions=set_tunnel:0x99,output:1"])
    board.bridges["br-int"].bridge.add_flows([
        "priority=10,tun_id=0x99,actions=output:10",
        "priority=5,tun_id=0,actions=output:11",
    ])
    board.inject("uplink", _frame())
    assert _sent(board, "vm2") == []
    assert len(_sent(board, "vm3")) == 1


def test_patch_loop_is_cut_and_counted_not_a_crash(board: Switchboard) -> None:
    board.add_bridge("br-a")
    board.add_bridge("br-b")
    board.add_port("br-a", "in", PortKind.SYSTEM, ofport=1)
    board.add_port("br-a", "a-to-b", PortKind.PATCH, ofport=2, options={"peer": "b-to-a"})
    board.add_port("br-b", "b-to-a", PortKind.PATCH, ofport=1, options={"peer": "a-to-b"})
    # output to the in_port needs IN_PORT (OpenFlow drops output:N when N is the in_port)
    board.bridges["br-a"].bridge.add_flows(["priority=1,in_port=1,actions=output:2",
                                            "priority=1,in_port=2,actions=IN_PORT"])
    board.bridges["br-b"].bridge.add_flows(["priority=1,actions=IN_PORT"])
    board.inject("in", _frame())
    drops = board.bridges["br-a"].drops | board.bridges["br-b"].drops
    assert drops.get("patch_loop") == 1
    assert board.ports["a-to-b"].stats.tx_packets == MAX_PATCH_DEPTH // 2


def test_patch_port_without_its_peer_drops_and_counts(board: Switchboard) -> None:
    board.add_bridge("br-a")
    board.add_port("br-a", "in", PortKind.SYSTEM)
    board.add_port("br-a", "lonely", PortKind.PATCH, options={"peer": "nobody"})
    board.inject("in", _frame(dst="ff:ff:ff:ff:ff:ff"))
    assert board.bridges["br-a"].drops == {"patch_peer_missing": 1}


def test_malformed_frame_is_counted_as_bad_packet(board: Switchboard) -> None:
    board.add_bridge("br-a")
    board.add_port("br-a", "in", PortKind.SYSTEM)
    board.add_port("br-a", "out", PortKind.SYSTEM)
    board.inject("in", _frame()[:20])  # IPv4 header cut short
    assert board.bridges["br-a"].drops == {"bad_packet": 1}
    assert board.ports["in"].stats.rx_errors == 1
    assert _sent(board, "out") == []


def test_normal_learns_so_the_reply_goes_only_to_the_sender(board: Switchboard) -> None:
    board.add_bridge("br-a")
    for name in ("p1", "p2", "p3"):
        board.add_port("br-a", name, PortKind.SYSTEM)
    board.inject("p1", _frame(src=VM1, dst="ff:ff:ff:ff:ff:ff"))
    assert len(_sent(board, "p2")) == 1 and len(_sent(board, "p3")) == 1
    board.inject("p2", _frame(src=VM2, dst=VM1))
    assert len(_sent(board, "p1")) == 1
    assert len(_sent(board, "p3")) == 1  # nothing more flooded


def test_a_tunnel_port_of_a_kind_the_datapath_cannot_read_is_refused_and_leaves_nothing(
        board: Switchboard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(tunnel_rx.IP_PARSERS, "gre")  # as if GRE had no receive path
    board.add_bridge("br-tun", "secure")
    with pytest.raises(PortError, match="gre: not a tunnel type this datapath carries"):
        board.add_port("br-tun", "gre-1", PortKind.GRE, options={"remote_ip": "192.0.2.2"})
    assert "gre-1" not in board.ports
    assert board.bridges["br-tun"].bridge.ports() == []
