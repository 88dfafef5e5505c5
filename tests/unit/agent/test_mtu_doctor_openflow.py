"""The MTU doctor's OpenFlow messages against independent facts: the OpenFlow 1.3.5
specification's byte layouts (written out here as literal bytes), a packet-in Open vSwitch 3.1
itself encoded (captured from br-tun's management socket on a lab hypervisor: a 1460-byte
ping with DF from gre1 to gre2, local VLAN 2), and ``ovs-ofctl ofp-print``'s reading of what
we encode."""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.tools import require_tool
from tunnelnet.agent import openflow

CAPTURED = bytes.fromhex((Path(__file__).parent / "data" / "ovs31_nxt_packet_in2.hex")
                         .read_text().strip())


def _ofp_print(message: bytes) -> str:
    ofctl = require_tool("ovs-ofctl")
    proc = subprocess.run([ofctl, "ofp-print", message.hex()], capture_output=True, text=True,
                          timeout=10, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_hello_is_the_eight_byte_ofp_header_of_version_1_3() -> None:
    # ofp_header: version 0x04, OFPT_HELLO 0, length 8, xid
    assert openflow.hello(7) == bytes([0x04, 0, 0, 8, 0, 0, 0, 7])


def test_set_async_asks_for_packet_ins_of_the_action_reason_only() -> None:
    # OFPT_SET_ASYNC (28), 32 bytes: packet_in_mask[2], port_status_mask[2],
    # flow_removed_mask[2]; OFPR_ACTION is reason 1, so the bit is 1 << 1
    assert openflow.set_async_packet_in(xid=2) == (
        bytes([0x04, 28, 0, 32, 0, 0, 0, 2]) + bytes([0, 0, 0, 2]) * 2 + bytes(16))


def test_set_packet_in_format_is_the_nicira_message_for_packet_in2() -> None:
    message = openflow.set_packet_in_format_nxt2(1)
    # experimenter header: NX_VENDOR_ID 0x00002320, subtype 16, then the format (2)
    assert message == (bytes([0x04, 4, 0, 20, 0, 0, 0, 1]) + bytes.fromhex("00002320")
                       + bytes([0, 0, 0, 16]) + bytes([0, 0, 0, 2]))
    assert "NXT_SET_PACKET_IN_FORMAT" in _ofp_print(message)
    assert "format=nxt_packet_in2" in _ofp_print(message)


def test_packet_out_layout_is_the_specs() -> None:
    data = bytes(range(20))
    message = openflow.packet_out(1, [openflow.action_output(openflow.Port.IN_PORT)], data)
    # header, buffer_id NO_BUFFER, in_port 1, actions_len 16, 6 pad bytes, then
    # ofp_action_output: type 0, len 16, port OFPP_IN_PORT, max_len 0, 6 pad bytes
    assert message == (bytes([0x04, 13, 0, 8 + 16 + 16 + 20, 0, 0, 0, 0])
                       + bytes.fromhex("ffffffff") + bytes([0, 0, 0, 1, 0, 16]) + bytes(6)
                       + bytes([0, 0, 0, 16]) + bytes.fromhex("fffffff8") + bytes(8) + data)


@pytest.mark.parametrize(("port", "said"), [(openflow.Port.IN_PORT, "actions=IN_PORT"),
                                             (openflow.Port.TABLE, "actions=TABLE")])
def test_ovs_ofctl_reads_our_packet_out(port: int, said: str) -> None:
    frame = bytes.fromhex("fa163e000002fa163e00000108004500001c000100004001f7d90a0000010a0000"
                          "020800f7ff00000000")
    printed = _ofp_print(openflow.packet_out(3, [openflow.action_output(port)], frame))
    assert "OFPT_PACKET_OUT (OF1.3)" in printed, printed
    assert "in_port=3" in printed and said in printed, printed
    assert f"data_len={len(frame)}" in printed, printed
    assert "nw_src=10.0.0.1,nw_dst=10.0.0.2" in printed, printed


def test_the_packet_in_open_vswitch_sent_decodes_as_ovs_ofctl_reads_it() -> None:
    buffer = bytearray(CAPTURED + b"\x04")  # a trailing partial header stays in the buffer
    (message,) = list(openflow.messages(buffer))
    assert buffer == b"\x04"
    pin = openflow.decode_packet_in2(message)
    printed = _ofp_print(CAPTURED)
    header = re.search(r"table_id=(\d+) cookie=(0x[0-9a-f]+) total_len=(\d+) "
                       r"reg0=0x1,in_port=(\d+) \(via action\)", printed)
    assert header is not None, printed
    assert pin.table_id == int(header.group(1))
    assert pin.cookie == int(header.group(2), 16)
    assert pin.full_len == len(pin.packet) == int(header.group(3))
    assert pin.in_port == int(header.group(4))
    assert pin.reason == openflow.REASON_ACTION
    userdata = re.search(r"userdata=([0-9a-f.]+)", printed)
    assert userdata is not None and pin.userdata.hex(".") == userdata.group(1)
    # the frame as sent: tagged with its local VLAN (2), 1460 + 28 bytes of IP
    assert pin.packet[12:16] == bytes.fromhex("81000002") and len(pin.packet) == 18 + 1488


def test_the_captured_packet_in_decodes_without_ovs_ofctl() -> None:
    pin = openflow.decode_packet_in2(next(openflow.messages(bytearray(CAPTURED))))
    assert (pin.table_id, pin.in_port, pin.userdata) == (2, 1, bytes.fromhex("746e4d44010105c4"))


@pytest.mark.parametrize("cut", [20, 21, 24, 30])
def test_a_truncated_packet_in_is_refused_by_name(cut: int) -> None:
    body = CAPTURED[8:cut]
    with pytest.raises(openflow.OpenFlowError):
        openflow.decode_packet_in2(openflow.Message(openflow.MsgType.EXPERIMENTER, 0, body))


def test_a_header_shorter_than_itself_is_refused() -> None:
    with pytest.raises(openflow.OpenFlowError, match="under the 8-byte header"):
        list(openflow.messages(bytearray(bytes([4, 10, 0, 4, 0, 0, 0, 0]))))


@given(st.binary(max_size=300))
def test_any_body_decodes_or_is_refused_as_openflow_error(body: bytes) -> None:
    message = openflow.Message(openflow.MsgType.EXPERIMENTER, 0,
                               CAPTURED[8:16] + body)
    with contextlib.suppress(openflow.OpenFlowError):
        openflow.decode_packet_in2(message)
