"""What the agent's MTU doctor sends back for a packet-in, judged by scapy (the ICMP it
builds, the fragments) and by the OpenFlow layout (where the packet-out sends it); its loop
over a socket pair (a malformed message costs a count, never the loop); and br-tun's flows
for it as the agent plans them and as ``tunnelnet verify`` reads them back from Open vSwitch's
dump (the line below is Open vSwitch 3.1's ``ovs-ofctl dump-flows`` output of the lab)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether

from tunnelnet.agent import br_tun, desired, mtu_doctor, openflow
from tunnelnet.agent.view import CloudView, Network
from tunnelnet.switch.pipeline import TunTable
from tunnelnet.verify.flows import parse_line, parse_wanted

VM, PEER = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
PATCH_INT = 1
MAX_VXLAN = 1450 + 18  # network MTU + Ethernet + the local VLAN tag


def _frame(size: int, *, df: bool = True, vlan: int = 3) -> bytes:
    ip = IP(src="10.4.0.11", dst="10.4.0.12", flags="DF" if df else 0)
    return bytes(Ether(src=VM, dst=PEER) / Dot1Q(vlan=vlan) / ip / ICMP() / bytes(size))


def _pin(frame: bytes, userdata: bytes = mtu_doctor.userdata(MAX_VXLAN),
         in_port: int | None = PATCH_INT) -> openflow.PacketIn:
    return openflow.PacketIn(frame, len(frame), 2, 1, 1, in_port, userdata)


def _unpack_packet_out(message: bytes) -> tuple[int, list[int], bytes]:
    """(in_port, output ports, data) of an OFPT_PACKET_OUT, read by the spec's layout."""
    version, kind, length, _xid = struct.unpack_from("!BBHI", message)
    assert (version, kind, length) == (4, 13, len(message))
    buffer_id, in_port, actions_len = struct.unpack_from("!IIH", message, 8)
    assert buffer_id == 0xFFFFFFFF
    actions = message[24:24 + actions_len]
    ports = [struct.unpack_from("!HHI", actions, i)[2] for i in range(0, len(actions), 16)]
    return in_port, ports, message[24 + actions_len:]


def test_ipv4_with_df_gets_frag_needed_back_out_of_patch_int_on_its_vlan() -> None:
    treatment = mtu_doctor.treat(_pin(_frame(1423)))  # 1451 bytes of IP, one too many
    assert treatment.reason == "mtu_frag_needed"
    (out,) = treatment.send
    in_port, ports, data = _unpack_packet_out(out)
    assert (in_port, ports) == (PATCH_INT, [openflow.Port.IN_PORT])
    reply = Ether(data)
    assert reply[Ether].dst == VM and reply[Ether].src == PEER
    assert reply[Dot1Q].vlan == 3  # br-int's NORMAL delivers it on the sender's local VLAN
    assert (reply[IP].src, reply[IP].dst) == ("10.4.0.12", "10.4.0.11")
    assert (reply[ICMP].type, reply[ICMP].code, reply[ICMP].nexthopmtu) == (3, 4, 1450)


def test_ipv6_gets_packet_too_big_with_the_networks_mtu() -> None:
    from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6

    frame = bytes(Ether(src=VM, dst=PEER) / Dot1Q(vlan=3) /
                  IPv6(src="fd00:4::11", dst="fd00:4::12") / ICMPv6EchoRequest(data=bytes(1452)))
    treatment = mtu_doctor.treat(_pin(frame))
    assert treatment.reason == "mtu_packet_too_big"
    _in_port, _ports, data = _unpack_packet_out(treatment.send[0])
    assert Ether(data)[ICMPv6PacketTooBig].mtu == 1450


def test_ipv4_without_df_goes_on_as_fragments_through_the_tables() -> None:
    treatment = mtu_doctor.treat(_pin(_frame(1600, df=False)))
    assert treatment.reason == "mtu_fragmented" and len(treatment.send) == 2
    for out in treatment.send:
        in_port, ports, data = _unpack_packet_out(out)
        # as if from br-int: through br-tun's tables, from table 0, past the check
        assert (in_port, ports) == (PATCH_INT, [openflow.Port.TABLE])
        assert len(data) <= MAX_VXLAN and Ether(data)[Dot1Q].vlan == 3
    first, second = (Ether(_unpack_packet_out(o)[2])[IP] for o in treatment.send)
    assert first.flags == "MF" and second.frag * 8 == len(first.payload)


@pytest.mark.parametrize(("pin", "reason"), [
    (_pin(_frame(1423), userdata=b"other"), "foreign"),
    (_pin(_frame(1423), in_port=None), "malformed"),
    (_pin(_frame(100)), "fits"),
    (_pin(bytes(Ether(src=VM, dst=PEER, type=0x88B5) / bytes(1500))), "mtu_exceeded"),
])
def test_what_cannot_be_answered_is_counted_and_nothing_is_sent(
        pin: openflow.PacketIn, reason: str) -> None:
    treatment = mtu_doctor.treat(pin)
    assert treatment.reason == reason and treatment.send == ()


@settings(max_examples=200)
@given(st.binary(max_size=1600), st.integers(0, 0xFFFF))
def test_treat_never_raises_on_any_frame(frame: bytes, max_frame: int) -> None:
    mtu_doctor.treat(_pin(frame, userdata=mtu_doctor.userdata(max_frame)))


def _packet_in2(frame: bytes) -> bytes:
    """An NXT_PACKET_IN2 as Open vSwitch lays it out (packet, table id, metadata with
    in_port, userdata), each property padded to 8 bytes."""
    def prop(kind: int, value: bytes) -> bytes:
        raw = struct.pack("!HH", kind, 4 + len(value)) + value
        return raw + bytes(-len(raw) % 8)
    in_port = struct.pack("!HBB", 0x8000, 0, 4) + PATCH_INT.to_bytes(4, "big")
    body = (struct.pack("!II", openflow.NX_EXPERIMENTER, 30) + prop(0, frame) + prop(3, b"\x02")
            + prop(6, in_port) + prop(7, mtu_doctor.userdata(MAX_VXLAN)))
    return struct.pack("!BBHI", 4, 4, 8 + len(body), 0) + body


def test_the_loop_answers_survives_garbage_and_writes_its_counts(tmp_path: Path) -> None:
    ours, switch = socket.socketpair()
    doctor = mtu_doctor.MtuDoctor(tmp_path / "br-tun.mgmt", tmp_path,
                                  connect=lambda _path: ours)
    stop = threading.Event()
    thread = threading.Thread(target=doctor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        switch.settimeout(5)
        hello = switch.recv(8)
        assert hello[:2] == bytes([4, 0])
        garbage = struct.pack("!BBHI", 4, 4, 8 + 12, 9) + struct.pack("!II", 0x2320, 30) + \
            b"\x00\x00\xff\xff"  # a property longer than the message
        switch.sendall(garbage + _packet_in2(_frame(1423)))
        received = bytearray()
        while True:
            received += switch.recv(1 << 16)
            messages = list(openflow.messages(received))
            outs = [m for m in messages if m.type == openflow.MsgType.PACKET_OUT]
            if outs:
                break
        assert Ether(outs[0].body[16 + 16:])[ICMP].nexthopmtu == 1450
        assert doctor.snapshot() == {"malformed": 1, "mtu_frag_needed": 1}
    finally:
        stop.set()
        thread.join(timeout=5)
        switch.close()
    assert json.loads((tmp_path / "mtu-doctor.json").read_text())["counts"] == \
        {"malformed": 1, "mtu_frag_needed": 1}


def _conf(*, doctor: bool) -> desired.AgentConfig:
    return desired.AgentConfig(host="hv1", tunnel_ip="192.0.2.41", l2pop=True,
                               mtu_doctor=doctor)


def _flows(conf: desired.AgentConfig, network: Network) -> list[str]:
    flows = desired.br_tun_flows(conf, CloudView(), cookie=1, patch_int_ofport=PATCH_INT,
                                 local_networks=[network], local_vlans={network.id: 1},
                                 tunnel_ofports={})
    return [f.add_text() for f in flows if "check_pkt_larger" in f.actions
            or "controller" in f.actions]


def test_only_an_open_vswitch_host_gets_the_check_and_only_for_tunnel_networks() -> None:
    vxlan = Network("n1", "vxlan", 4100, mtu=1450)
    assert _flows(_conf(doctor=False), vxlan) == []
    assert _flows(_conf(doctor=True), Network("n2", "vlan", 100, "physnet1", mtu=1500)) == []
    assert _flows(_conf(doctor=True), vxlan) == [
        f"table=0,priority=2,in_port=1,dl_vlan=1 actions=check_pkt_larger({MAX_VXLAN})"
        "->NXM_NX_REG0[0],resubmit(,2)",
        "table=2,priority=2,reg0=0x1/0x1,dl_vlan=1 actions=controller("
        f"userdata={mtu_doctor.userdata(MAX_VXLAN).hex('.')})",
    ]


def test_verify_reads_open_vswitchs_dump_of_the_doctors_flows_as_the_plan() -> None:
    # Open vSwitch 3.1's dump-flows of the lab's hv1 (counters and all)
    dumped = [
        " cookie=0x1, duration=49.579s, table=0, n_packets=19, n_bytes=3902, idle_age=3, "
        "priority=2,in_port=1,dl_vlan=1 actions=check_pkt_larger(1468)->NXM_NX_REG0[0],"
        "resubmit(,2)",
        " cookie=0x1, duration=49.579s, table=2, n_packets=19, n_bytes=3902, idle_age=3, "
        "priority=2,reg0=0x1/0x1,dl_vlan=1 actions=controller(userdata=74.6e.4d.44.01.01.05.bc)",
    ]
    vxlan = Network("n1", "vxlan", 4100, mtu=1450)
    flows = desired.br_tun_flows(_conf(doctor=True), CloudView(), cookie=1,
                                 patch_int_ofport=PATCH_INT, local_networks=[vxlan],
                                 local_vlans={"n1": 1}, tunnel_ofports={})
    wanted = parse_wanted([f for f in flows if f.table in (TunTable.LOCAL_SWITCHING,
                                                           TunTable.PATCH_LV_TO_TUN)
                           and f.priority == 2], 1)
    assert {p.key: p.actions for p in map(parse_line, dumped)} == \
        {k: p.actions for k, p in wanted.items()}
    # a length changed by hand is another action, not the same flow
    changed = parse_line(dumped[0].replace("1468", "1500"))
    assert changed.actions != wanted[changed.key].actions


def test_max_frame_is_the_networks_mtu_with_ethernet_and_the_local_tag() -> None:
    # measured on Open vSwitch 3.1 (br_tun.MTU_CHECK_L2): 1450 bytes of IP pass, 1451 do not
    assert br_tun.max_frame(1450) == 1468 and br_tun.max_frame(1458) == 1476


def test_the_answer_rate_is_bounded_by_a_token_bucket() -> None:
    bucket = mtu_doctor._Bucket(rate=10.0, burst=3.0, tokens=3.0, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.05) is False  # half a token back
    assert bucket.take(100.2) is True  # whole tokens back, at rate a second
