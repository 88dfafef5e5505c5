"""VLAN networks beside tunnels (examples/vlan-vs-tunnel.toml): the agent joins br-int to the
physical bridge from --bridge-mappings and translates local VLAN <-> provider VLAN, as Neutron
does. On the physical wire the VLAN tenant's frames carry its 802.1Q id and nothing else does;
the tunnel tenant, with the very same addresses, never appears there untunnelled."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import assert_reach_only_within, run_lab, running_lab
from support.tools import require_tool

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parents[2] / "examples" / "vlan-vs-tunnel.toml"
PREFIX = f"tnv{os.getpid() % 10000}"


def _lab(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("vlanlab")
    with running_lab(PREFIX, TOPOLOGY, directory) as up:
        # the lab says what a physical switch would have to be told
        assert "VLAN" in up.stderr and "physical switch" in up.stderr
        yield directory


def test_vlan_and_tunnel_tenants_reach_their_own_and_nothing_else(lab_dir: Path) -> None:
    assert_reach_only_within(PREFIX, lab_dir, {"old1": "old-vlan", "old2": "old-vlan",
                                               "new1": "new-vxlan", "new2": "new-vxlan"})


def test_physical_wire_carries_only_the_vlan_tenant_with_its_provider_vlan(
        lab_dir: Path) -> None:
    require_tool("tshark")
    state = json.loads((lab_dir / "state.json").read_text())
    pcap = lab_dir / "physical.pcap"
    capture = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-underlay", "tcpdump", "-i",
                                "ulp-hv1", "-U", "-w", str(pcap), "-c", "5000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        for src, dst in (("old1", "old2"), ("new1", "new2")):
            ns, ip = state["vms"][src]["netns"], state["vms"][dst]["ip"]
            subprocess.run(["ip", "netns", "exec", ns, "ping", "-c3", "-i0.2", "-W1", ip],
                           capture_output=True, timeout=30, check=True)
    finally:
        time.sleep(0.5)
        capture.terminate()
        capture.wait(timeout=10)
    # The lab's physical network is one Linux bridge that also joins the hypervisors'
    # underlay, and like any switch it floods a frame whose destination it has not learned
    # yet: VXLAN between hypervisors may pass this port. That is the underlay, which the
    # physical network carries anyway; the tenant frames inside it stay encapsulated.
    underlay = {hv["ip"] for hv in state["hypervisors"].values()}
    tunnelled = subprocess.run(["tshark", "-r", str(pcap), "-Y", "udp.dstport == 4789",
                                "-T", "fields", "-E", "separator=|", "-e", "ip.src",
                                "-e", "ip.dst", "-e", "vxlan.vni"],
                               capture_output=True, text=True, timeout=60, check=True).stdout
    for line in tunnelled.splitlines():
        src, dst, vni = (field.split(",")[0] for field in line.split("|"))
        assert {src, dst} <= underlay and vni, line  # hypervisor to hypervisor, with a VNI
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "not udp.dstport == 4789", "-T",
                          "fields", "-E", "separator=|",
                          "-e", "vlan.id", "-e", "eth.src", "-e", "icmp.type"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    old_macs = {state["vms"][v]["mac"] for v in ("old1", "old2")}
    new_macs = {state["vms"][v]["mac"] for v in ("new1", "new2")}
    assert rows, "nothing captured on the physical network"
    assert {vid for vid, _src, _icmp in rows} == {"1100"}  # every frame tagged, one VLAN
    assert {src for _vid, src, _icmp in rows} <= old_macs
    assert not ({src for _vid, src, _icmp in rows} & new_macs)
    assert any(icmp == "8" for _vid, _src, icmp in rows)  # the echo requests went this way
