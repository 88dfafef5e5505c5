"""The user-facing commands against Open vSwitch: `tunnelnet flows dump` and `flows trace`.

A Neutron br-tun flow file (with comments and blank lines, as people write them) is given to
`ovs-ofctl add-flows` and to `tunnelnet flows ... --flows FILE`, run as a user runs it (a
subprocess). The dump must be `ovs-ofctl --no-stats dump-flows`'s set of lines; the trace, in
JSON, must visit the tables and priorities OVS visits and send the packet to the same ports;
in text, it must read like `ofproto/trace` (parsed by the same parser as OVS's answer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.neutron_br_tun import BrTunHost, Network, Peer, RemotePort, br_tun_flows
from support.ovs import OvsSwitch
from support.ovs_diff import compare_trace_text
from support.ovs_packets import Pkt, arp_request, tcp
from support.tools import require_tool

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-tun"
PEER_IPS = ("192.0.2.2", "192.0.2.3", "192.0.2.4")
PEERS = tuple(Peer("vxlan", ip, 2 + n) for n, ip in enumerate(PEER_IPS))
HOST = BrTunHost(
    1,
    [Network("vxlan", 100, 1, flood_to=("192.0.2.2", "192.0.2.4"))],
    PEERS,
    [RemotePort(100, "fa:16:3e:00:02:01", "10.0.0.21", "192.0.2.2")],
    l2pop=True,
    arp_responder=True,
)
VM = "fa:16:3e:00:01:01"
PACKETS = [
    tcp(1, VM, "fa:16:3e:00:02:01", vlan=1, label="known-unicast"),
    tcp(1, VM, "fa:16:3e:00:09:09", vlan=1, label="unknown-unicast-floods"),
    arp_request(1, VM, "10.0.0.11", "10.0.0.21", vlan=1, label="arp-answered-locally"),
    tcp(3, "fa:16:3e:00:03:01", VM, tun_id=100, label="from-tunnel"),
    tcp(3, "fa:16:3e:00:03:01", VM, tun_id=7, label="unknown-vni-dropped"),
]


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flows") / "br-tun.flows"
    lines = ["# br-tun of a host with one VXLAN network, l2population and ARP responder", ""]
    lines += br_tun_flows(HOST)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ovs(flow_file: Path) -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        switch.add_port(BRIDGE, "patch-int", 1, type="dummy")
        switch.add_underlay(PEER_IPS)
        for peer in PEERS:
            switch.add_tunnel_port(BRIDGE, peer.port_name, peer.kind, peer.remote_ip, peer.ofport)
        switch.ofctl("add-flows", switch.mgmt(BRIDGE), str(flow_file))
        yield switch


def tunnelnet(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tunnelnet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"tunnelnet {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def port_args() -> list[str]:
    args = ["--port", "patch-int=1"]
    for peer in PEERS:
        args += ["--port", f"{peer.port_name}={peer.ofport}"]
    return args


def test_flows_dump_command_prints_what_ovs_ofctl_dumps(ovs: OvsSwitch, flow_file: Path) -> None:
    ours = {line for line in tunnelnet("flows", "dump", "--flows", str(flow_file)).splitlines()}
    theirs = set(ovs.dump_flows(BRIDGE))
    assert ours - {""} == theirs


@pytest.mark.parametrize("pkt", PACKETS, ids=lambda p: p.label)
def test_flows_trace_command_agrees_with_ofproto_trace(
    ovs: OvsSwitch, flow_file: Path, pkt: Pkt
) -> None:
    theirs = ovs.trace(BRIDGE, pkt.flow_text())
    flows = ["flows", "trace", "--flows", str(flow_file), *port_args()]
    data = json.loads(tunnelnet(*flows, "--json", pkt.flow_text()))
    visited = [(int(s["table"]), int(s["priority"])) for s in data["steps"]]
    assert visited == theirs.visited
    assert data["outputs"] == theirs.output_ports
    assert data["drop"] is theirs.drop
    text = tunnelnet(*flows, pkt.flow_text())
    problems = compare_trace_text(text, theirs, str(pkt))
    assert not problems, "\n".join(problems) + f"\nours:\n{text}\nOVS:\n{theirs.text}"
