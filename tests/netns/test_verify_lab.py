"""``tunnelnet verify`` on a running lab with one hypervisor on our vswitchd (hv1) and one on
Open vSwitch (hv2): clean as built, and each fault made by hand - with the switch's own tools,
ovs-ofctl/ovs-vsctl or tunnelnet ofctl/vsctl - is found and named, one after the other on the
same lab, each undone (and verify clean again) before the next.

The hypervisor's agent is stopped while its switch is broken by hand: a running agent puts
port tags and tunnel ports back within a round, which is the agent's job, not verify's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab_cli import run_lab, running_lab
from support.tools import require_tool
from tunnelnet.cli.main import main

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "mixed.toml"
PREFIX = f"tnv{os.getpid() % 10000}"
_FLOW = re.compile(r"cookie=(0x[0-9a-f]+),.*\btable=(\d+),.*\bpriority=(\d+),?(\S*) "
                   r"actions=(\S+)")


def _run(lab_dir: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, command=command)


def _verify(lab_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """The command itself, in this process (the faults need many runs; each saves a start)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["verify", "--dir", str(lab_dir), "--json", "--quiet", *args])
    assert rc in (0, 1), out.getvalue()
    return rc, json.loads(out.getvalue())


def _findings(report: dict[str, Any], host: str) -> list[dict[str, Any]]:
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    assert entry["error"] is None, entry
    found: list[dict[str, Any]] = entry["findings"]
    return found


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("verifylab")
    with running_lab(PREFIX, TOPOLOGY, directory):
        yield directory


class Switch:
    """One hypervisor's switch, changed with its own tools (not with anything of verify)."""

    def __init__(self, lab_dir: Path, host: str) -> None:
        state = json.loads((lab_dir / "state.json").read_text())
        self.lab_dir = lab_dir
        self.info = state["hypervisors"][host]
        self.rundir = self.info["rundir"]
        self.ovs = self.info.get("switch") == "ovs"

    def _ok(self, argv: list[str]) -> str:
        if argv[0] == "tunnelnet":
            # tunnelnet ofctl/vsctl in this process: each saves the command's start-up
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = main(argv[1:])
            assert rc == 0, f"{argv}: {out.getvalue()}"
            return out.getvalue()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done.stdout

    def ofctl(self, verb: str, bridge: str, *args: str, strict: bool = False) -> str:
        if self.ovs:
            return self._ok(["ovs-ofctl", *(["--strict"] if strict else []), verb,
                             f"unix:{self.rundir}/{bridge}.mgmt", *args])
        return self._ok(["tunnelnet", "ofctl", "--rundir", self.rundir, verb, bridge,
                         *(["--strict"] if strict else []), *args])

    def flows(self, bridge: str, table: int, priority: int) -> list[tuple[str, str, str]]:
        """(cookie, match, actions) of the flows at that table and priority."""
        out = []
        for line in self.ofctl("dump-flows", bridge).splitlines():
            m = _FLOW.search(line)
            if m and int(m.group(2)) == table and int(m.group(3)) == priority:
                out.append((m.group(1), m.group(4), m.group(5)))
        return out

    def add_tunnel(self, name: str, remote_ip: str) -> None:
        if self.ovs:
            self._ok(["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", "add-port", "br-tun",
                      name, "--", "set", "Interface", name, "type=vxlan",
                      f"options:remote_ip={remote_ip}", "options:key=flow"])
        else:
            self._ok(["tunnelnet", "vsctl", "--rundir", self.rundir, "add-port", "br-tun", name,
                      "type=vxlan", f"options:remote_ip={remote_ip}",
                      f"options:local_ip={self.info['ip']}", "options:key=flow"])

    def del_port(self, bridge: str, name: str) -> None:
        if self.ovs:
            self._ok(["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", "del-port", bridge,
                      name])
        else:
            self._ok(["tunnelnet", "vsctl", "--rundir", self.rundir, "del-port", bridge, name])

    def set_tag(self, port: str, tag: int) -> None:
        if self.ovs:
            self._ok(["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", "set", "Port", port,
                      f"tag={tag}"])
        else:
            self._ok(["tunnelnet", "vsctl", "--rundir", self.rundir, "set-port", "br-int", port,
                      f"tag={tag}"])

    def tunnel_ports(self) -> list[str]:
        if self.ovs:
            names = self._ok(["ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", "list-ports",
                              "br-tun"]).split()
        else:
            names = self._ok(["tunnelnet", "vsctl", "--rundir", self.rundir, "list-ports",
                              "br-tun"]).split()
        return [n for n in names if n.startswith("vxlan-")]


def _only(report: dict[str, Any], host: str, kind: str) -> list[dict[str, Any]]:
    found = _findings(report, host)
    assert found, f"nothing found on {host}"
    assert {f["kind"] for f in found} == {kind}, found
    return found


def _clean(lab_dir: Path, host: str) -> None:
    rc, report = _verify(lab_dir, "--host", host)
    assert rc == 0 and _findings(report, host) == [], report


def _wait_clean(lab_dir: Path, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rc, report = _verify(lab_dir)
        if rc == 0 or time.monotonic() > deadline:
            assert rc == 0, json.dumps(report, indent=1)
            return report
        time.sleep(1.0)


def test_the_lab_as_built_verifies_clean_on_both_switches(lab_dir: Path) -> None:
    # traffic across the tunnel teaches both br-tuns (table 10's learn() into table 20):
    # learned entries are traffic's, never a finding
    ping = _run(lab_dir, "lab", "ping", "r1", "r2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    report = _wait_clean(lab_dir)
    assert [(h["host"], h["switch"]) for h in report["hosts"]] == [("hv1", "tunnelnet"),
                                                                   ("hv2", "ovs")]
    for host in report["hosts"]:
        # each network of the host's VMs has a VLAN, read from its key -> VLAN flow
        assert set(host["local_vlans"]) == {"red-net", "blue-net"}
        assert all("br-tun table" in v["from"] for v in host["local_vlans"].values())
        assert host["flows_checked"] > 10
        assert host["learned_ignored"] >= 1, host
    assert report["timing"]["total_s"] > 0
    text = _run(lab_dir, "verify")
    assert text.returncode == 0 and "clean" in text.stdout, text.stdout + text.stderr
    # without the lab's record: the controller's URL and each hypervisor's switch by hand
    state = json.loads((lab_dir / "state.json").read_text())
    hv = state["hypervisors"]
    given = _run(lab_dir, "verify", "--json", "--server", state["server_url"], "--token",
                 state["admin_token"], "--vswitchd", f"hv1={hv['hv1']['rundir']}",
                 "--ovs", f"hv2={hv['hv2']['rundir']}")
    assert given.returncode == 0, given.stdout + given.stderr
    assert [(h["host"], h["switch"]) for h in json.loads(given.stdout)["hosts"]] == \
        [("hv1", "tunnelnet"), ("hv2", "ovs")]


@pytest.mark.parametrize("host,vm", [("hv1", "r1"), ("hv2", "r2")])
def test_faults_made_by_hand_are_found_and_named(lab_dir: Path, host: str, vm: str) -> None:
    _wait_clean(lab_dir)
    switch = Switch(lab_dir, host)
    stopped = _run(lab_dir, "lab", "stop", f"agent-{host}")
    assert stopped.returncode == 0, stopped.stderr
    try:
        _faults(lab_dir, host, vm, switch)
    finally:
        started = _run(lab_dir, "lab", "start", f"agent-{host}")
        assert started.returncode == 0, started.stderr
    # a new agent generation reprograms the switch and sweeps the old cookie's flows
    _wait_clean(lab_dir)


def _faults(lab_dir: Path, host: str, vm: str, switch: Switch) -> None:
    _clean(lab_dir, host)

    # 1. an l2population flow of table 20 deleted
    cookie, match, actions = switch.flows("br-tun", 20, 2)[0]
    switch.ofctl("del-flows", "br-tun", f"table=20,priority=2,{match}", strict=True)
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "missing_flow")
    assert found["bridge"] == "br-tun" and "table=20" in found["subject"], found
    assert match.split("dl_dst=")[1] in found["subject"]
    switch.ofctl("add-flow", "br-tun", f"cookie={cookie},table=20,priority=2,{match} "
                 f"actions={actions}")
    _clean(lab_dir, host)

    # 2. an output removed from a flood list of table 22
    cookie, match, actions = switch.flows("br-tun", 22, 1)[0]
    fewer = re.sub(r",output:\d+$", "", actions)
    assert fewer != actions
    # with its cookie: an OpenFlow 1.0 modify without one sets the cookie to 0
    switch.ofctl("mod-flows", "br-tun", f"cookie={cookie},table=22,priority=1,{match} "
                 f"actions={fewer}", strict=True)
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "wrong_actions")
    assert "table=22" in found["subject"] and actions.split(",")[-1] in found["detail"]
    switch.ofctl("mod-flows", "br-tun", f"cookie={cookie},table=22,priority=1,{match} "
                 f"actions={actions}", strict=True)
    _clean(lab_dir, host)

    # 3. a flow of an old cookie (an agent generation's leftover)
    switch.ofctl("add-flow", "br-tun", "cookie=0xbad0,table=22,priority=1,dl_vlan=77 "
                 "actions=drop")
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "stale_cookie")
    assert "cookie=0xbad0" in found["subject"] and "dl_vlan=77" in found["subject"]
    switch.ofctl("del-flows", "br-tun", "cookie=0xbad0/-1")
    _clean(lab_dir, host)

    # 4. a tunnel port to an address no agent has
    switch.add_tunnel("vxlan-0a636363", "10.99.99.99")
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "unknown_tunnel")
    assert found["subject"] == "vxlan-0a636363" and "10.99.99.99" in found["detail"]
    switch.del_port("br-tun", "vxlan-0a636363")
    _clean(lab_dir, host)

    # 5. the VM's vNIC moved onto the other tenant's local VLAN, then onto the dead VLAN
    state = json.loads((lab_dir / "state.json").read_text())
    tap = state["vms"][vm]["tap"]
    vlans = _verify(lab_dir, "--host", host)[1]["hosts"][0]["local_vlans"]
    own, other = vlans["red-net"]["vlan"], vlans["blue-net"]["vlan"]
    switch.set_tag(tap, other)
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "wrong_vlan")
    assert found["subject"] == tap and f"tag {other}" in found["detail"]
    assert f"local VLAN {own}" in found["detail"]
    switch.set_tag(tap, 4095)
    (found,) = _only(_verify(lab_dir, "--host", host)[1], host, "dead_vlan")
    assert found["subject"] == tap
    switch.set_tag(tap, own)
    _clean(lab_dir, host)

    # 6. the VXLAN tunnel port deleted under the flows that output to it
    (tunnel,) = switch.tunnel_ports()
    flood = next(p for p in switch.flows("br-tun", 22, 1) if "0x1389" in p[2])[2]
    dead = re.findall(r"output:(\d+)", flood)[-1]
    switch.del_port("br-tun", tunnel)
    rc, report = _verify(lab_dir, "--host", host)
    found = _findings(report, host)
    assert rc == 1
    assert {"dead_output", "missing_tunnel"} <= {f["kind"] for f in found}, found
    outputs = [f for f in found if f["kind"] == "dead_output"]
    assert all(f"port {dead} " in f["detail"] for f in outputs), outputs
    assert any("table=22" in f["subject"] for f in outputs)
    assert [f["subject"] for f in found if f["kind"] == "missing_tunnel"] == [tunnel]
