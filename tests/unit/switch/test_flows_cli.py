# ruff: noqa: E501  (flow and trace lines are kept whole, as Open vSwitch printed them)
"""`tunnelnet flows dump|trace` on a flow file, through the real command line entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunnelnet.cli.main import main

FLOWS = """\
# br-tun, one VXLAN network
table=0,priority=1,in_port=1 actions=resubmit(,2)
table=0,priority=1,in_port=2 actions=resubmit(,4)
table=0,priority=0 actions=drop
table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)
table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)
table=10,priority=1 actions=learn(table=20,priority=1,hard_timeout=300,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3
"""


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "br-tun.flows"
    path.write_text(FLOWS)
    return path


def test_dump_prints_normalised_lines_in_table_and_priority_order(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["flows", "dump", "--flows", str(flow_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "priority=1,in_port=1 actions=resubmit(,2)"
    assert lines[2] == "priority=0 actions=drop"
    assert (
        lines[-1]
        == "table=22, priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3"
    )


def test_dump_json(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", "dump", "--flows", str(flow_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[-1]["table"] == 22 and data[-1]["match"] == "dl_vlan=1"


def test_trace_json_lists_tables_and_outputs(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["flows", "trace", "--flows", str(flow_file), "--port", "patch-int=1", "--json",
            "in_port=patch-int,dl_vlan=1,dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(s["table"], s["priority"]) for s in data["steps"]] == [(0, 1), (2, 0), (22, 1)]
    assert data["outputs"] == [2, 3] and data["drop"] is False


def test_trace_explain_in_text(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["flows", "trace", "--flows", str(flow_file), "--explain", "--pipeline", "br-tun",
            "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Flow: tun_id=0x64,in_port=2,")
    assert "learning switch" in out and "Datapath actions: 1" in out


def test_bad_flow_file_is_one_line_error_naming_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.flows"
    path.write_text("priority=1 actions=drop\npriority=2,tp_dst=80 actions=drop\n")
    assert main(["flows", "dump", "--flows", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "tp_dst" in err and "Traceback" not in err


def test_missing_flow_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["flows", "dump", "--flows", str(tmp_path / "none")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_trace_normal_with_access_ports_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "br-int.flows"
    path.write_text("priority=0 actions=NORMAL\n")
    argv = ["flows", "trace", "--flows", str(path), "--json", "--port", "vm1=1:tag=5",
            "--port", "vm2=2:tag=5", "--port", "vm3=3:tag=6", "--port", "uplink=4:trunks=5/6",
            "in_port=vm1,dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == [2, 4]


def test_bad_port_option_is_a_clear_error(
    flow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["flows", "trace", "--flows", str(flow_file), "--port", "vm1=1:tag=x", "in_port=1"])
        == 1
    )
    assert "tag=x" in capsys.readouterr().err
