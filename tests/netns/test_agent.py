"""The agent on real namespaces (issue 7): forwarding that survives agent and controller
restarts, same-host traffic that never reaches br-tun, tunnels that follow l2population's
shared-network condition, and dead peers forgotten everywhere.

The lab here runs under its own namespace prefix so it can coexist with a developer's lab.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab_cli import run_lab, running_lab

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "agent.toml"
PREFIX = f"tna{os.getpid() % 10000}"


def _lab(lab_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, timeout=timeout, check=True)


def _state(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab_dir / "state.json").read_text())
    return data


def _ofctl(state: dict[str, Any], hv: str, *args: str) -> list[str]:
    rundir = state["hypervisors"][hv]["rundir"]
    out = subprocess.run([sys.executable, "-m", "tunnelnet", "ofctl", "--rundir", rundir,
                          *args], capture_output=True, text=True, timeout=30, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _tunnels(state: dict[str, Any], hv: str) -> set[str]:
    rundir = state["hypervisors"][hv]["rundir"]
    out = subprocess.run([sys.executable, "-m", "tunnelnet", "vsctl", "--rundir", rundir,
                          "list-ports", "br-tun"], capture_output=True, text=True, timeout=30,
                         check=True)
    return {name for name in out.stdout.split() if name.startswith(("vxlan-", "gre-"))}


def _api(lab_dir: Path) -> Any:
    from tunnelnet.client.http import Client

    state = _state(lab_dir)
    return Client(state["server_url"], state["admin_token"])


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _hex(ip: str) -> str:
    return "".join(f"{int(p):02x}" for p in ip.split("."))


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("agentlab")
    with running_lab(PREFIX, TOPOLOGY, directory):
        yield directory


def _ping(state: dict[str, Any], src: str, dst: str, *extra: str,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    ns = state["vms"][src]["netns"]
    ip = state["vms"][dst]["ip"]
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", *extra, ip],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_same_host_pair_never_reaches_br_tun(lab_dir: Path) -> None:
    state = _state(lab_dir)
    assert _ping(state, "r1", "r3", "-c2", "-W1").returncode == 0  # learn MACs first

    def from_br_int() -> int:
        # table 0's flow for frames coming from br-int through patch-int
        lines = [line for line in _ofctl(state, "hv1", "dump-flows", "br-tun", "table=0")
                 if "resubmit(,2)" in line]
        return sum(int(m) for line in lines for m in re.findall(r"n_packets=(\d+)", line))

    before = from_br_int()
    assert _ping(state, "r1", "r3", "-c200", "-i0.002", "-W1", timeout=60).returncode == 0
    # 400 frames crossed br-int between r1 and r3 (echo and reply); had br-int sent them on to
    # br-tun the counter would have risen by as many. Only the VMs' own background chatter
    # (IPv6 router/neighbour solicitations, ARP refreshes) may reach it meanwhile.
    assert from_br_int() - before < 20


def test_l2pop_tunnels_exist_only_while_hosts_share_a_network_with_ports(
        lab_dir: Path) -> None:
    state = _state(lab_dir)
    hv2, hv3 = state["hypervisors"]["hv2"]["ip"], state["hypervisors"]["hv3"]["ip"]
    # hv1 has only red ports; red is on hv2: VXLAN to hv2, no GRE (blue is not on hv1)
    assert _tunnels(state, "hv1") == {f"vxlan-{_hex(hv2)}"}
    assert _tunnels(state, "hv3") == set()
    with _api(lab_dir) as api:
        red = state["networks"]["red-net"]["id"]
        port = api.create("port", network_id=red, project_id="red", name="on-hv3",
                          **{"binding:host_id": "hv3"})
        _wait(lambda: f"vxlan-{_hex(hv3)}" in _tunnels(state, "hv1"), "tunnel hv1 -> hv3")
        assert f"gre-{_hex(hv3)}" not in _tunnels(state, "hv1")
        api.delete("port", port["id"])
        _wait(lambda: f"vxlan-{_hex(hv3)}" not in _tunnels(state, "hv1"),
              "tunnel hv1 -> hv3 to go")
    assert _tunnels(state, "hv1") == {f"vxlan-{_hex(hv2)}"}


def test_pings_lose_nothing_while_agents_and_controller_restart(lab_dir: Path) -> None:
    state = _state(lab_dir)
    assert _ping(state, "r1", "r2", "-c3", "-W1").returncode == 0
    cookies_before = {c for line in _ofctl(state, "hv1", "dump-flows", "br-tun")
                      for c in re.findall(r"cookie=(0x[0-9a-f]+)", line)}
    ns, ip = state["vms"]["r1"]["netns"], state["vms"]["r2"]["ip"]
    # 1,500 pings 10 ms apart: about 15 s, covering every restart below
    pinger = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-i", "0.01",
                               "-c", "1500", "-W", "1", ip], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        for daemon in ("agent-hv1", "agent-hv2"):
            _lab(lab_dir, "stop", daemon)
        time.sleep(1.0)
        for daemon in ("agent-hv1", "agent-hv2"):
            _lab(lab_dir, "start", daemon)
        time.sleep(3.0)  # resync: new cookie installed, then old ones swept
        _lab(lab_dir, "stop", "server")
        time.sleep(2.0)
        _lab(lab_dir, "start", "server")
        out, _ = pinger.communicate(timeout=90)
    finally:
        if pinger.poll() is None:
            pinger.kill()
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert sent is not None, out
    assert sent.group(1) == sent.group(2), f"lost pings: {out}"
    # the restarted agent swept the old generation: one cookie, a new one
    cookies_after = {c for line in _ofctl(state, "hv1", "dump-flows", "br-tun")
                     for c in re.findall(r"cookie=(0x[0-9a-f]+)", line)}
    assert len(cookies_after) == 1 and cookies_after != cookies_before


def test_a_deleted_agent_loses_its_tunnels_everywhere_and_gets_them_back(
        lab_dir: Path) -> None:
    state = _state(lab_dir)
    hv1_ip = state["hypervisors"]["hv1"]["ip"]
    hv2_ip = state["hypervisors"]["hv2"]["ip"]
    _lab(lab_dir, "stop", "agent-hv2")
    try:
        with _api(lab_dir) as api:
            agent = next(a for a in api.list("agent") if a["host"] == "hv2")
            api.delete("agent", agent["id"])
        _wait(lambda: f"vxlan-{_hex(hv2_ip)}" not in _tunnels(state, "hv1"),
              "hv1 to drop its tunnel to the deleted agent's host")
        assert not any("output:" in line and "table=20, " in line and "priority=2" in line
                       for line in _ofctl(state, "hv1", "dump-flows", "br-tun"))
    finally:
        _lab(lab_dir, "start", "agent-hv2")
    _wait(lambda: f"vxlan-{_hex(hv2_ip)}" in _tunnels(state, "hv1"), "the tunnel to return")
    _wait(lambda: f"vxlan-{_hex(hv1_ip)}" in _tunnels(state, "hv2"), "the tunnel back")
    _wait(lambda: _ping(state, "r1", "r2", "-c1", "-W1").returncode == 0, "r1 to reach r2")


def test_a_restarted_vswitchd_keeps_its_ports_and_the_agent_reprograms_its_flows(
        lab_dir: Path) -> None:
    state = _state(lab_dir)
    r2 = state["vms"]["r2"]
    _lab(lab_dir, "stop", "vswitchd-hv2")
    assert _ping(state, "r1", "r2", "-c2", "-W1").returncode != 0  # hv2 forwards nothing now
    _lab(lab_dir, "start", "vswitchd-hv2")
    # the VM's vNIC came back from the switch's own configuration, not from a new plug
    rundir = state["hypervisors"]["hv2"]["rundir"]
    _wait(lambda: (lab_dir / "hv2" / "vswitchd.sock").exists()
          or Path(rundir, "vswitchd.sock").exists(), "vswitchd control socket")
    ports = subprocess.run([sys.executable, "-m", "tunnelnet", "vsctl", "--rundir", rundir,
                            "list-ports", "br-int", "--json"], capture_output=True, text=True,
                           timeout=30, check=True).stdout
    assert r2["tap"] in ports and r2["port_id"] in ports
    _wait(lambda: _ping(state, "r1", "r2", "-c1", "-W1").returncode == 0,
          "r1 to reach r2 once the agent has reprogrammed hv2", timeout=60)


def test_a_vm_booted_while_its_agent_is_down_stays_on_the_dead_vlan_until_bound(
        lab_dir: Path) -> None:
    state = _state(lab_dir)
    _lab(lab_dir, "stop", "agent-hv1")
    try:
        _lab(lab_dir, "add-vm", "late", "--network", "red-net", "--hypervisor", "hv1",
             "--ip", "10.1.0.50")
        state = _state(lab_dir)
        rundir = state["hypervisors"]["hv1"]["rundir"]
        ports = json.loads(subprocess.run(
            [sys.executable, "-m", "tunnelnet", "vsctl", "--rundir", rundir, "list-ports",
             "br-int", "--json"], capture_output=True, text=True, timeout=30,
            check=True).stdout)
        tap = state["vms"]["late"]["tap"]
        late = next(p for p in ports if (p["name"] if isinstance(p, dict) else p) == tap)
        assert isinstance(late, dict) and late["tag"] == 4095  # neither sends nor receives
        assert _ping(state, "late", "r3", "-c2", "-W1").returncode != 0
    finally:
        _lab(lab_dir, "start", "agent-hv1")
    _wait(lambda: _ping(state, "late", "r3", "-c1", "-W1").returncode == 0,
          "the agent to bind the late VM", timeout=60)
