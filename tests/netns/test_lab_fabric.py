"""The lab's wiring on real namespaces: hypervisors reach each other over the underlay,
VMs get the controller's MAC and the network's MTU, and teardown leaves nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tunnelnet.lab import fabric, names
from tunnelnet.lab.topology import load

pytestmark = pytest.mark.netns

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {entry["name"] for entry in json.loads(out or "[]")}


def _exec(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=20, check=False)


def test_underlay_and_vm_wiring_then_nothing_left_behind() -> None:
    topo = load(DEMO)
    if any(ns.startswith("tnl-") for ns in _netns()):
        pytest.skip("a lab is up on this machine (tnl-* namespaces exist)")
    made: list[str] = []
    # only what this test makes is checked: other labs and tests may come and go meanwhile
    ours = {names.UNDERLAY_NS, names.vm_ns("red1"),
            *(names.hypervisor_ns(hv.name) for hv in topo.hypervisors)}
    try:
        fabric.build_underlay(topo, made.append)
        hv1, hv2 = topo.hypervisors[0], topo.hypervisors[1]
        ping = _exec(names.hypervisor_ns(hv1.name), "ping", "-c3", "-i0.2", "-W2", hv2.ip)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        port_id = "1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809"
        tap = fabric.build_vm("red1", hv1.name, made.append, port_id=port_id, mtu=1450,
                              ip="10.0.0.11", prefixlen=24, mac="fa:16:3e:12:34:56")
        assert tap == "tap1b2c3d4e-5f"  # Nova: "tap" + the port id's first 11 characters
        link = json.loads(_exec(names.vm_ns("red1"), "ip", "-json", "link", "show",
                                "eth0").stdout)[0]
        assert link["address"] == "fa:16:3e:12:34:56"
        assert link["mtu"] == 1450
        tap_link = json.loads(_exec(names.hypervisor_ns(hv1.name), "ip", "-json", "link",
                                    "show", tap).stdout)[0]
        assert tap_link["mtu"] == 1450
    finally:
        left = fabric.teardown(made)
    assert left == []
    assert not ours & _netns()
