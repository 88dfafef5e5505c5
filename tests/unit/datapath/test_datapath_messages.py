"""The control protocol's records: every request survives encode/decode, and anything that is
not a well-formed request is refused with a message naming the bad part."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelnet.datapath import messages as m
from tunnelnet.datapath.errors import ProtocolError

names = st.text(min_size=1, max_size=15)
EXAMPLES: list[m.Request] = [
    m.AddBridge("br-int", fail_mode="secure"),
    m.DelBridge("br-int", if_exists=True),
    m.AddPort("br-tun", "vx1", type="vxlan", ofport=7,
              options={"remote_ip": "192.0.2.2", "key": "flow"}),
    m.AddPort("br-int", "tap1", tag=5, external_ids={"iface-id": "abc"}),
    m.DelPort("", "tap1"),
    m.SetPort("br-int", "tap1", tag=4095, external_ids={"iface-id": "x"}),
    m.AddPort("br-tun", "vx2", type="vxlan", options={"remote_ip": "192.0.2.3"},
              bfd={"enable": "true", "min_tx": "100"}),
    m.SetInterface("vx2", bfd={"min_rx": "300"}),
    m.SetInterface("vx2", replace=True),
    m.ListInterfaces(),
    m.ListInterfaces("vx2"),
    m.BfdShow("vx2"),
    m.ListBridges(),
    m.ListPorts("br-int"),
    m.Show(),
    m.AddFlows("br-int", ["priority=1,actions=drop", "table=2,actions=NORMAL"]),
    m.ModFlows("br-int", "in_port=1,actions=drop", strict=True),
    m.DelFlows("br-int", "table=3"),
    m.DumpFlows("br-int", "table=0", stats=False),
    m.DumpPorts("br-int", "tap1"),
    m.TraceFlow("br-int", "in_port=1,dl_dst=ff:ff:ff:ff:ff:ff", explain=True),
    m.DumpDrops(),
    m.SetBridge("br-int", {"mac-table-size": "1024", "mac-aging-time": "60"}),
    m.FdbShow("br-int"),
    m.DatapathStats(),
    m.Ping(),
]


def test_every_operation_has_an_example() -> None:
    assert {type(r) for r in EXAMPLES} == set(m.REQUESTS.values())


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.OP)
def test_request_round_trips_through_one_line(request_: m.Request) -> None:
    line = m.encode_request(request_, 42)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert m.decode_request(line.rstrip(b"\n")) == (42, request_)


@given(bridge=names, port=names, tag=st.none() | st.integers(0, 4095),
       options=st.dictionaries(names, st.text(max_size=20), max_size=4))
def test_add_port_round_trips_for_any_text(bridge: str, port: str, tag: int | None,
                                           options: dict[str, str]) -> None:
    request = m.AddPort(bridge, port, tag=tag, options=options)
    assert m.decode_request(m.encode_request(request, 1)) == (1, request)


@given(result=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                           lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                           max_leaves=10))
def test_reply_round_trips_any_json_result(result: object) -> None:
    assert m.decode_response(m.encode_response(m.Reply(3, result))) == m.Reply(3, result)


def test_error_reply_round_trips() -> None:
    reply = m.ErrorReply(9, "FlowSyntaxError", "bad field 'foo'")
    assert m.decode_response(m.encode_response(reply)) == reply


def _body(**changes: object) -> bytes:
    body: dict[str, object] = {"v": 1, "id": 5, "op": "add-br", "args": {"bridge": "br0"}}
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (_body(v=99), "version 99"),
        (_body(op="frobnicate"), "frobnicate"),
        (_body(args={"bridge": 7}), "'bridge'"),
        (_body(args={}), "missing argument 'bridge'"),
        (_body(args={"bridge": "b", "colour": "red"}), "colour"),
        (_body(args={"bridge": "b", "may_exist": 1}), "'may_exist'"),
        (_body(op="add-port", args={"bridge": "b", "port": "p", "tag": True}), "'tag'"),
        (_body(op="add-port", args={"bridge": "b", "port": "p", "options": {"k": 1}}),
         "'options'"),
        (_body(op="add-flows", args={"bridge": "b", "flows": "actions=drop"}), "'flows'"),
    ],
)
def test_malformed_request_is_refused_naming_the_bad_part(line: bytes, named: str) -> None:
    with pytest.raises(ProtocolError, match=named.replace("(", r"\(")) as info:
        m.decode_request(line)
    if line.startswith(b"{"):
        assert info.value.request_id == 5  # so the error answer can still be matched


def test_requests_are_immutable_records() -> None:
    request = m.AddBridge("br0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.bridge = "br1"  # type: ignore[misc]
