"""A real `tunnelnet vswitchd` process in a temp run directory, managed with the real vsctl and
ofctl commands. Only patch ports here (no root needed); kinds that need root are in
tests/netns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.vswitchd import Vswitchd
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import socket_path

# These daemons run in the test's own namespace (the host's, as root): the kernel fast path
# (the default, auto) would make its VXLAN device and filters there. They test the daemon's
# life, not the fast path: Python only, said here.
PYTHON_ONLY = ("--fastpath", "off")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vswitchd]:
    """One daemon for the module (starting one per test costs ~1 s each)."""
    with Vswitchd(rundir=tmp_path_factory.mktemp("vswitchd") / "run") as started:
        yield started


@pytest.fixture
def daemon(running: Vswitchd) -> Iterator[Vswitchd]:
    """The shared daemon, emptied after each test so tests cannot see each other's bridges."""
    yield running
    for bridge in running.call(m.ListBridges()):
        running.call(m.DelBridge(bridge))


def _patch_pair(d: Vswitchd) -> None:
    """Two bridges joined by patch ports, set up through the control socket (fast); the CLI
    doing the same is the first test."""
    d.call(m.AddBridge("br-int"))
    d.call(m.AddBridge("br-tun", fail_mode="secure"))
    d.call(m.AddPort("br-int", "patch-tun", type="patch", options={"peer": "patch-int"},
                     ofport=7))
    d.call(m.AddPort("br-tun", "patch-int", type="patch", options={"peer": "patch-tun"}))


def test_vsctl_builds_bridges_and_patch_ports_that_show_lists(daemon: Vswitchd) -> None:
    daemon.vsctl("add-br", "br-int")
    daemon.vsctl("add-br", "br-tun", "fail_mode=secure")
    daemon.vsctl("add-port", "br-int", "patch-tun", "type=patch", "options:peer=patch-int",
                 "ofport=7")
    daemon.vsctl("add-port", "br-tun", "patch-int", "type=patch", "options:peer=patch-tun")
    assert daemon.vsctl("list-br").split() == ["br-int", "br-tun"]
    assert daemon.vsctl("list-ports", "br-int").split() == ["patch-tun"]
    shown = json.loads(daemon.vsctl("show", "--json"))
    ports = {p["name"]: p for b in shown for p in b["ports"]}
    assert ports["patch-tun"]["ofport"] == 7
    assert ports["patch-int"]["ofport"] == 1  # lowest free number, as Open vSwitch picks
    assert ports["patch-tun"]["options"] == {"peer": "patch-int"}
    text = daemon.vsctl("show")
    assert "    Bridge br-tun\n        fail_mode: secure\n" in text
    assert "            Interface patch-tun\n                type: patch\n" in text


def test_set_port_retags_in_place_keeping_number_and_flows(daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    daemon.vsctl("add-port", "br-int", "vnic", "type=patch", "options:peer=nowhere",
                 "tag=4095", "external_ids:iface-id=port-1")
    daemon.ofctl("add-flow", "br-int", "priority=5,in_port=vnic,actions=drop")
    daemon.vsctl("set-port", "br-int", "vnic", "tag=3", "external_ids:iface-id=port-1",
                 "external_ids:attached-mac=fa:16:3e:00:00:01")
    (port,) = [p for p in json.loads(daemon.vsctl("list-ports", "br-int", "--json"))
               if p["name"] == "vnic"]
    assert port["tag"] == 3
    assert port["ofport"] == 1
    assert port["external_ids"] == {"iface-id": "port-1", "attached-mac": "fa:16:3e:00:00:01"}
    assert "priority=5,in_port=1 actions=drop" in daemon.ofctl("dump-flows", "br-int",
                                                               "--no-stats")
    daemon.vsctl("set-port", "vnic", "tag=[]")
    assert daemon.call(m.ListPorts("br-int"))[0]["tag"] is None


def test_del_flows_by_cookie_and_strict_leave_the_others(daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    daemon.ofctl("add-flows", "br-tun", "-", input=(
        "cookie=0x1,table=0,priority=1,in_port=1,actions=drop\n"
        "cookie=0x2,table=0,priority=1,in_port=2,actions=drop\n"
        "cookie=0x2,table=0,priority=2,in_port=2,actions=drop\n"))
    daemon.ofctl("del-flows", "br-tun", "cookie=0x1/-1")
    daemon.ofctl("del-flows", "br-tun", "--strict", "table=0,priority=2,in_port=2")
    left = daemon.ofctl("dump-flows", "br-tun", "--no-stats").splitlines()
    assert [line.split()[0] for line in left] == ["cookie=0x2,"]
    assert "priority=1,in_port=2" in left[0]


def test_text_outputs_have_the_open_vswitch_shapes(daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    daemon.call(m.AddPort("br-int", "vm", type="patch", options={"peer": "x"}, ofport=3))
    trace = daemon.ofctl("trace", "br-int", "in_port=3,dl_dst=ff:ff:ff:ff:ff:ff")
    assert trace.startswith("Flow: ")  # ovs-appctl ofproto/trace layout
    assert 'bridge("br-int")' in trace and "Datapath actions:" in trace
    assert "port 7 (patch-tun): patch to 'patch-int'" in trace
    ports = daemon.ofctl("dump-ports", "br-int", "7").splitlines()
    # ovs-ofctl dump-ports: a reply line, then rx and tx lines per port
    assert ports[0] == "OFPST_PORT reply: 1 ports"
    assert ports[1] == "  port  7: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0"
    assert ports[2] == "           tx pkts=0, bytes=0, drop=0, errs=0, coll=0"
    assert daemon.ofctl("dump-ports", "br-int", "patch-tun", "--names").splitlines()[1
                                                                          ].startswith(
        "  port patch-tun: rx")
    drops = daemon.ofctl("dump-drops")
    assert "bridge br-int:" in drops and "tunnel receive:" in drops
    # nothing has crossed the datapath yet: no plans, no packets either way
    assert daemon.ofctl("dp-stats").splitlines() == [
        "fastpath: off (--fastpath off)", "plans: 0 (made 0)",
        "packets: followed a plan 0, walked the tables 0"]


def test_standalone_bridge_starts_with_normal_and_secure_bridge_with_nothing(
        daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    # Open vSwitch's default flow of a standalone bridge (ovs-vswitchd.conf.db(5), fail_mode)
    assert daemon.ofctl("dump-flows", "br-int", "--no-stats").split() == [
        "priority=0", "actions=NORMAL"]
    assert daemon.ofctl("dump-flows", "br-tun").strip() == ""


def test_flows_added_from_a_file_are_dumped_and_traced(daemon: Vswitchd, tmp_path: Path
                                                       ) -> None:
    _patch_pair(daemon)
    flows = tmp_path / "flows.txt"
    flows.write_text("# br-tun by hand\n"
                     "table=0,priority=1,in_port=1,actions=set_tunnel:0x64,resubmit(,2)\n"
                     "\n"
                     "table=2,priority=0,actions=drop\n")
    daemon.ofctl("add-flows", "br-tun", str(flows))
    dumped = daemon.ofctl("dump-flows", "br-tun", "table=0", "--no-stats")
    assert "in_port=1" in dumped and "set_tunnel:0x64" in dumped
    trace = json.loads(daemon.ofctl("trace", "br-tun", "in_port=1,dl_dst=ff:ff:ff:ff:ff:ff",
                                    "--json"))
    assert [s["table"] for s in trace["steps"]] == [0, 2]
    assert trace["drop"] is True
    daemon.ofctl("mod-flows", "br-tun", "table=2,actions=output:1")
    assert "actions=output:1" in daemon.ofctl("dump-flows", "br-tun", "table=2")
    assert daemon.ofctl("del-flows", "br-tun", "table=2") == ""
    assert "table=2" not in daemon.ofctl("dump-flows", "br-tun")


@pytest.mark.parametrize(
    ("group", "args", "message"),
    [
        ("vsctl", ["add-br", "br-int"], "already exists"),
        ("vsctl", ["add-port", "br-nope", "p1", "type=patch", "options:peer=x"],
         "no bridge named 'br-nope'"),
        ("vsctl", ["add-port", "br-int", "patch-int", "type=patch", "options:peer=y"],
         "already exists on bridge 'br-tun'"),
        ("vsctl", ["add-port", "br-int", "p9", "type=warp"], "unknown port type 'warp'"),
        ("vsctl", ["add-port", "br-int", "p9", "type=patch"], "options:peer"),
        ("vsctl", ["add-port", "br-int", "p9", "type=patch", "options:peer=x", "tag=5000"],
         "tag 5000"),
        ("vsctl", ["add-port", "br-int", "p9", "type=patch", "options:peer=x", "ofport=7"],
         "ofport 7 is taken by 'patch-tun'"),
        ("vsctl", ["add-port", "br-int", "p9", "type=vxlan", "options:key=1"], "remote_ip"),
        ("vsctl", ["add-port", "br-int", "p9", "type=vxlan", "options:remote_ip=1.2.3.4",
                   "options:colour=red"], "unknown option(s) colour"),
        ("vsctl", ["add-port", "br-int", "p9", "type=gre", "options:remote_ip=1.2.3.4",
                   "options:key=banana"], "key 'banana'"),
        ("vsctl", ["add-port", "br-int", "no/slash", "type=patch", "options:peer=x"],
         "bad port name"),
        ("vsctl", ["del-port", "br-int", "ghost"], "no port named 'ghost'"),
        ("vsctl", ["set-port", "br-int", "ghost", "tag=3"], "no port named 'ghost'"),
        ("vsctl", ["set-port", "br-int", "patch-tun", "tag=9999"], "tag 9999"),
        ("vsctl", ["set-port", "br-int", "patch-tun", "colour=red"], "unknown setting"),
        ("ofctl", ["add-flow", "br-int", "priority=1,in_port=1,actions=frobnicate"],
         "frobnicate"),
        ("ofctl", ["add-flow", "br-x", "actions=drop"], "no bridge named 'br-x'"),
    ],
)
def test_bad_request_answers_clearly_and_changes_nothing(daemon: Vswitchd, group: str,
                                                         args: list[str], message: str) -> None:
    _patch_pair(daemon)
    before = (daemon.call(m.Show()), daemon.call(m.DumpFlows("br-int", stats=False)))
    proc = daemon.cli(group, *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    after = (daemon.call(m.Show()), daemon.call(m.DumpFlows("br-int", stats=False)))
    assert after == before


def test_add_flows_file_with_one_bad_line_adds_none(daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    proc = daemon.cli("ofctl", "add-flows", "br-tun", "-", check=False,
                      input="priority=5,actions=drop\npriority=6,actions=nonsense\n")
    assert proc.returncode == 1 and "nonsense" in proc.stderr
    assert daemon.ofctl("dump-flows", "br-tun").strip() == ""


def test_del_br_removes_its_ports_and_names_become_free(daemon: Vswitchd) -> None:
    _patch_pair(daemon)
    daemon.vsctl("del-br", "br-tun")
    assert daemon.vsctl("list-br").split() == ["br-int"]
    daemon.vsctl("add-port", "br-int", "patch-int", "type=patch", "options:peer=patch-tun")
    assert sorted(daemon.vsctl("list-ports", "br-int").split()) == ["patch-int", "patch-tun"]


def test_sigterm_exits_cleanly_and_removes_socket_and_pidfile(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    rundir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir",
                             str(rundir), *PYTHON_ONLY, "--pidfile", "--log-file",
                             str(rundir / "log")])
    try:
        deadline = time.monotonic() + 15
        while not (rundir / "vswitchd.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (rundir / "vswitchd.pid").read_text().strip() == str(proc.pid)
        assert socket_path(rundir).exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not socket_path(rundir).exists()
    assert not (rundir / "vswitchd.pid").exists()
    assert "signal SIGTERM" in (rundir / "log").read_text()


def test_second_daemon_on_the_same_rundir_is_refused(daemon: Vswitchd) -> None:
    proc = subprocess.run([sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir",
                           str(daemon.rundir), *PYTHON_ONLY], capture_output=True, text=True,
                          timeout=30,
                          check=False)
    assert proc.returncode == 1
    assert "already runs" in proc.stderr
    assert daemon.call(m.Ping())["pid"] > 0  # the first one is untouched


def test_detach_returns_once_the_daemon_answers(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir",
                           str(rundir), *PYTHON_ONLY, "--detach", "--pidfile"],
                          capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    pid = int((rundir / "vswitchd.pid").read_text())
    try:
        listed = subprocess.run([sys.executable, "-m", "tunnelnet", "vsctl", "--rundir",
                                 str(rundir), "list-br"], capture_output=True, text=True,
                                timeout=30, check=True)
        assert listed.stdout == ""
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while (rundir / "vswitchd.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not (rundir / "vswitchd.pid").exists()


def test_client_without_daemon_gets_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tunnelnet", "vsctl", "--rundir",
                           str(tmp_path), "list-br"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("tunnelnet: error: no vswitchd is listening")
    assert len(proc.stderr.strip().splitlines()) == 1
