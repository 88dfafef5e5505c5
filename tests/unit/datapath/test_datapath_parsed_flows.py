"""The flow snapshot's parsed form (parsed_flows.py): a line's parsed flow is what the text
parser makes of that line (the parser is the oracle), a restart that uses it dumps the flows
the switch had, and anything not made from exactly these lines by this code is not used."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tunnelnet.switch.bridge as bridge_module
from support.flow_text import flows
from tunnelnet.datapath import flow_snapshot, parsed_flows, persist
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.switchboard import Switchboard
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.flow_format import format_flow
from tunnelnet.switch.flow_parser import FlowCommand, parse_flow


def _installed(texts: list[str]) -> Bridge | None:
    bridge = Bridge("b", fail_mode="secure")
    for text in texts:
        try:
            bridge.add_flow(text)
        except FlowSyntaxError:
            return None  # not this test's subject (test_flow_text_roundtrip.py's)
    return bridge


@settings(max_examples=100, deadline=None)
@given(st.lists(flows(), min_size=1, max_size=8))
def test_a_lines_parsed_form_is_what_the_text_parser_makes_of_it(texts: list[str]) -> None:
    bridge = _installed(texts)
    assume(bridge is not None)
    assert bridge is not None
    kept = [(format_flow(e, stats=False, now=0.0), e) for e in bridge.flows()]
    lines = [line for line, _ in kept]
    known = parsed_flows.decode(parsed_flows.encode({"b": kept}), {"b": lines})
    assert set(known["b"]) == set(lines)
    for line in lines:
        oracle = parse_flow(line, FlowCommand.ADD)
        got = known["b"][line]
        assert (got.table, got.priority, got.match, got.actions) == (
            oracle.table, oracle.priority, oracle.match, oracle.actions)
        assert (got.new_cookie or 0) == (oracle.new_cookie or 0)
        assert (got.idle_timeout, got.hard_timeout) == (oracle.idle_timeout,
                                                        oracle.hard_timeout)
    # and installed, they dump as the same lines parsed from text do
    from_parsed, from_text = Bridge("p", fail_mode="secure"), Bridge("t", fail_mode="secure")
    from_parsed.add_flows(lines, known=known["b"])
    from_text.add_flows(lines)
    assert from_parsed.dump_flows(stats=False) == from_text.dump_flows(stats=False)
    assert sorted(from_parsed.dump_flows(stats=False)) == sorted(lines)


AGENT_FLOWS = [
    "cookie=0x5,table=0,priority=65535,dl_vlan=4095,actions=drop",
    "cookie=0x5,table=0,priority=2,in_port=1,actions=resubmit(,60)",
    "cookie=0x5,table=60,priority=3,actions=NORMAL",
    "cookie=0x5,table=20,priority=2,dl_vlan=3,dl_dst=fa:16:3e:00:00:01,"
    "actions=strip_vlan,output:2",
    "cookie=0x5,table=10,priority=1,actions=learn(table=20,priority=1,hard_timeout=300,"
    "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:OXM_OF_IN_PORT[]),"
    "output:1",
]


def _saved(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    board = Switchboard(EventLoop())
    board.add_bridge("br-int", "secure")
    board.add_port("br-int", "patch-a", PortKind.PATCH, ofport=1, options={"peer": "x"})
    board.add_port("br-int", "patch-b", PortKind.PATCH, ofport=2, tag=3,
                   options={"peer": "y"})
    board.bridge("br-int").bridge.add_flows(AGENT_FLOWS)
    dumped = board.bridge("br-int").bridge.dump_flows(stats=False)
    conf, flows_path = tmp_path / persist.CONFIG_NAME, tmp_path / flow_snapshot.SNAPSHOT_NAME
    persist.save(board, conf)
    flow_snapshot.save(board, flows_path)
    board.close()
    return conf, flows_path, dumped


def _restore(conf: Path, flows_path: Path, monkeypatch: pytest.MonkeyPatch, *,
             parser_allowed: bool) -> tuple[int, list[str], int]:
    """Restore into a new switch; the text parser counts the add-flow lines it parses (and
    fails each one unless ``parser_allowed``)."""
    calls = []
    real = bridge_module.parse_flow

    def counting(*args: object, **kwargs: object) -> object:
        if args[1] is not FlowCommand.ADD:  # dump-flows parses its (empty) selection
            return real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(args[0])
        if not parser_allowed:
            raise FlowSyntaxError("the text parser was not to be used")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bridge_module, "parse_flow", counting)
    board = Switchboard(EventLoop())
    persist.restore(board, conf)
    restored = flow_snapshot.restore(board, flows_path)
    dumped = board.bridge("br-int").bridge.dump_flows(stats=False)
    board.close()
    monkeypatch.setattr(bridge_module, "parse_flow", real)
    return restored, dumped, len(calls)


def test_a_restart_puts_the_flows_back_without_parsing_a_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf, flows_path, before = _saved(tmp_path)
    restored, after, parsed = _restore(conf, flows_path, monkeypatch, parser_allowed=False)
    assert (restored, parsed) == (len(AGENT_FLOWS), 0)
    assert after == before


def test_without_its_parsed_form_the_snapshot_is_parsed_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf, flows_path, before = _saved(tmp_path)
    (tmp_path / parsed_flows.PARSED_NAME).unlink()
    restored, after, parsed = _restore(conf, flows_path, monkeypatch, parser_allowed=True)
    assert (restored, parsed) == (len(AGENT_FLOWS), len(AGENT_FLOWS))
    assert after == before


def test_a_parsed_form_of_other_code_or_other_lines_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf, flows_path, before = _saved(tmp_path)
    parsed_path = tmp_path / parsed_flows.PARSED_NAME
    good = parsed_path.read_bytes()
    # written by another version of the switch's code
    document = pickle.loads(good)
    document["fingerprint"] = "0" * 64
    parsed_path.write_bytes(pickle.dumps(document))
    assert _restore(conf, flows_path, monkeypatch, parser_allowed=True) == (
        len(AGENT_FLOWS), before, len(AGENT_FLOWS))
    # made from other lines: the snapshot changed after its parsed form was written (a
    # flow's priority edited by hand is restored as its text says, not as parsed before)
    parsed_path.write_bytes(good)
    text = flows_path.read_text()
    flows_path.write_text(text.replace("priority=3", "priority=4"))
    restored, after, parsed = _restore(conf, flows_path, monkeypatch, parser_allowed=True)
    assert (restored, parsed) == (len(AGENT_FLOWS), len(AGENT_FLOWS))
    assert after == [line.replace("priority=3", "priority=4") for line in before]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_a_damaged_or_hostile_parsed_form_restores_from_text_and_runs_nothing(
        tmp_path: Path, noise: bytes) -> None:
    marker = tmp_path / "ran"
    hostile = pickle.dumps({"format": parsed_flows.FORMAT,
                            "fingerprint": parsed_flows.fingerprint(),
                            "bridges": {"b": ("", [_Payload(marker)])}})
    for data in (hostile, noise, hostile[: len(hostile) // 2]):
        assert parsed_flows.decode(data, {"b": ["actions=drop"]}) == {}
    assert not marker.exists()
