"""examples/geneve.toml on tunnelnet's own vswitchd, and the same with Open vSwitch on the
second hypervisor (topologies/geneve_mixed.toml): `lab up` builds it (the lab no longer
refuses Geneve on our switch), `lab verify` finds that the Geneve and the VXLAN network, which
carry the same number 3003, each reach within and never across, and what crosses the underlay
for the Geneve network is RFC 8926 to scapy: UDP 6081, version 0, protocol 0x6558, VNI 3003.

Expected values come from the topology file and RFC 8926, never from the lab's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from support.lab_cli import assert_reach_only_within, run_lab, running_lab
from support.tools import require_tool
from support.underlay_capture import is_tunnel_bfd, underlay_frames_of_a_ping

pytestmark = pytest.mark.netns

TOPOLOGIES = {"ours": Path(__file__).resolve().parents[2] / "examples" / "geneve.toml",
              "mixed": Path(__file__).resolve().parent / "topologies" / "geneve_mixed.toml"}
PREFIX = f"tnG{os.getpid() % 10000}"
VNI = 3003
NETWORK = {"green1": "green", "green2": "green", "red1": "red", "red2": "red"}


def _lab(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args)


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def lab_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Path]:
    if request.param == "mixed":
        require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("genevelab")
    with running_lab(PREFIX, TOPOLOGIES[request.param], directory):
        yield directory


def test_vms_reach_within_their_network_and_never_across_the_shared_number(
        lab_dir: Path) -> None:
    assert_reach_only_within(PREFIX, lab_dir, NETWORK)


def test_each_hypervisor_has_a_geneve_port_on_our_switch(lab_dir: Path) -> None:
    status = _lab(lab_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    tunnels = {hv["name"]: set(hv["tunnels"]) for hv in json.loads(status.stdout)["hypervisors"]}
    # 192.0.2.12 = c000020c: hv1's ports towards hv2, and back (Neutron's names)
    assert {"geneve-c000020c", "vxlan-c000020c"} <= tunnels["hv1"]
    assert {"geneve-c000020b", "vxlan-c000020b"} <= tunnels["hv2"]


def test_the_geneve_networks_bytes_are_rfc_8926_to_scapy(lab_dir: Path, tmp_path: Path) -> None:
    frames = underlay_frames_of_a_ping(PREFIX, lab_dir, tmp_path / "green.pcap", "green1",
                                       "green2")
    # the agents' BFD control packets (VNI 0, inner UDP 3784) are the tunnels', no tenant's
    geneve = [Ether(f) for f in frames if Ether(f).haslayer(GENEVE) and not is_tunnel_bfd(f)]
    assert len(geneve) >= 2  # at least the echo request and its reply
    for packet in geneve:
        g = packet[GENEVE]
        assert packet[UDP].dport == 6081
        assert (g.version, g.proto, g.vni, g.oam, g.critical, g.optionlen) == (
            0, 0x6558, VNI, 0, 0, 0)
        if packet[IP].src == "192.0.2.11":  # hv1, ours in both topologies
            assert 49152 <= packet[UDP].sport <= 65535  # the inner flow's hash (RFC 8926 3.3)


def test_every_tunnel_runs_bfd_and_comes_up_between_our_switch_and_open_vswitch(
        lab_dir: Path) -> None:
    # the agents put BFD on every tunnel (default 1000 ms); in the mixed lab Open vSwitch's
    # own BFD is hv2's end of each session
    deadline = time.monotonic() + 40
    while True:
        status = _lab(lab_dir, "status", "--json")
        assert status.returncode == 0, status.stderr
        states = {(hv["name"], port): s["state"] for hv in json.loads(status.stdout)
                  ["hypervisors"] for port, s in hv["tunnel_states"].items()}
        if len(states) == 4 and set(states.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, states
        time.sleep(1.0)
