"""Geneve end to end on Open vSwitch's userspace datapath, driven by our controller and agent:
a Geneve and a VXLAN network with the same VNI reach within and never across, OVS's Geneve
bytes are what our decoder and scapy read as RFC 8926, and ``trace --live`` agrees with them.

Both hypervisors run Open vSwitch here (the kernel has no geneve module); the same topology
on our own vswitchd, and with one of each, is tests/netns/test_lab_geneve.py. Expected values
come from the topology file and RFC 8926 (UDP 6081, version 0, protocol 0x6558), never from
the lab's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.l2 import Ether

from support.lab_cli import assert_reach_only_within, run_lab, running_lab
from support.tools import require_tool
from support.underlay_capture import is_tunnel_bfd, underlay_frames_of_a_ping
from tunnelnet.packet.tunnel import decap

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "geneve_ovs.toml"
PREFIX = f"tng{os.getpid() % 10000}"
VNI = 3003
NETWORK = {"g1": "green", "g2": "green", "r1": "red", "r2": "red"}


def _lab(lab_dir: Path, *args: str, command: str = "lab") -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, command=command)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("genevelab")
    with running_lab(PREFIX, TOPOLOGY, directory):
        yield directory


def test_vms_reach_within_their_network_and_never_across_the_shared_vni(
        lab_dir: Path) -> None:
    assert_reach_only_within(PREFIX, lab_dir, NETWORK)


def test_each_hypervisor_has_a_geneve_port_named_as_neutron_names_it(lab_dir: Path) -> None:
    status = _lab(lab_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    tunnels = {hv["name"]: set(hv["tunnels"]) for hv in json.loads(status.stdout)["hypervisors"]}
    # 192.0.2.2 = c0000202: hv1's ports towards hv2, and back
    assert {"geneve-c0000202", "vxlan-c0000202"} <= tunnels["hv1"]
    assert {"geneve-c0000201", "vxlan-c0000201"} <= tunnels["hv2"]


def _capture_while(lab_dir: Path, pcap: Path, src: str, dst: str) -> list[bytes]:
    frames = underlay_frames_of_a_ping(PREFIX, lab_dir, pcap, src, dst)
    # the agents' BFD control packets (key 0, inner UDP 3784) are the tunnels', no tenant's;
    # IPv6 multicast (33:33:...) is the VMs' own chatter since boot (router solicitations
    # come for some seconds), not the ping's
    return [f for f in frames if not is_tunnel_bfd(f) and bytes(decap(f)[2])[:2] != b"\x33\x33"]


def test_open_vswitchs_geneve_bytes_are_rfc_8926_to_our_decoder_and_to_scapy(
        lab_dir: Path, tmp_path: Path) -> None:
    frames = _capture_while(lab_dir, tmp_path / "green.pcap", "g1", "g2")
    geneve = [f for f in frames if Ether(f).haslayer(GENEVE)]
    assert len(geneve) >= 2  # at least the echo request and its reply
    for frame in geneve:
        kind, key, inner = decap(frame)
        g = Ether(frame)[GENEVE]
        assert (kind, key) == ("geneve", VNI)
        assert (g.version, g.proto, g.vni, g.oam) == (0, 0x6558, VNI, 0)
        assert bytes(inner) == bytes(g.payload)
    frames = _capture_while(lab_dir, tmp_path / "red.pcap", "r1", "r2")
    assert {decap(f)[:2] for f in frames} == {("vxlan", VNI)}


def test_trace_live_agrees_with_the_wire_over_geneve(lab_dir: Path) -> None:
    run = _lab(lab_dir, "--live", "g1", "g2", command="trace")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "underlay as Geneve VNI 3003" in run.stdout.replace("\n  ", " ")
    assert "Live check: AGREES with the wire" in run.stdout
