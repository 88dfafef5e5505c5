"""The simulated lab answers a bad request with an error and goes on, as the real one does:
every request of the sim server, given what a user (or a stray client) may send."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunnelnet.cli.main import main
from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_server import SimServer
from tunnelnet.lab.sim_wire import SOCKET_NAME, SimRequest
from tunnelnet.lab.state import StateFile
from tunnelnet.lab.topology import load
from tunnelnet.server import ports
from tunnelnet.server.auth import ADMIN
from tunnelnet.trace.sim_remote import OP, handler

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> SimServer:
    lab = SimLab(load(DEMO))
    assert lab.up().converged
    return SimServer(lab, tmp_path_factory.mktemp("sim"), extra={OP: handler})


ADD = {"name": "red9", "network": "red-net", "hypervisor": "hv1"}

# (request, words the error must contain); each is the request's fault
BAD_INPUT: list[tuple[str, dict[str, Any], str]] = [
    ("add-vm", {**ADD, "ip": "10.9.9.9"}, "--ip 10.9.9.9 is not in red-net's subnet 10.0.0.0/24"),
    ("add-vm", {**ADD, "ip": "10.0.0.300"}, "--ip '10.0.0.300' is not an IP address"),
    ("add-vm", {**ADD, "ip": "banana"}, "is not an IP address"),
    ("add-vm", {**ADD, "ip": "10.0.0.11"}, "--ip 10.0.0.11 is taken on red-net (by red1)"),
    ("add-vm", {**ADD, "ip": "10.0.0.0"}, "network address of red-net's subnet"),
    ("add-vm", {**ADD, "ip": 7}, "'ip' as a non-empty string"),
    ("add-vm", {**ADD, "name": "red1"}, "a VM named 'red1' exists already"),
    ("add-vm", {**ADD, "name": "no spaces!"}, "must be letters, digits and '-'"),
    ("add-vm", {**ADD, "name": None}, "'name' as a non-empty string"),
    ("add-vm", {**ADD, "network": "pink-net"}, "unknown network 'pink-net'"),
    ("add-vm", {**ADD, "hypervisor": "hv9"}, "unknown hypervisor 'hv9'"),
    ("add-vm", {}, "needs 'network'"),
    ("ping", {"src": "red1", "dst": "nobody"}, "no VM named 'nobody'"),
    ("ping", {"src": "red1"}, "needs 'dst'"),
    ("ping", {"src": "ghost", "dst": "red1"}, "no VM named 'ghost'"),
    ("ping", {"src": ["red1"], "dst": "red2"}, "needs 'src'"),
    ("move", {"vm": "ghost", "hypervisor": "hv2"}, "no VM named 'ghost'"),
    ("move", {"vm": "red1", "hypervisor": "hv9"}, "unknown hypervisor 'hv9'"),
    ("move", {"vm": "red1", "hypervisor": "hv1"}, "red1 is already on hv1"),
    ("move", {"vm": "red1"}, "needs 'hypervisor'"),
    ("move", {"vm": 3, "hypervisor": "hv2"}, "needs 'vm'"),
    ("flows", {"hypervisor": "hv9"}, "no hypervisor 'hv9'"),
    ("flows", {"hypervisor": "hv1", "bridge": "br-x"}, "no bridge named 'br-x'"),
    ("stop-agent", {"daemon": "vswitchd-hv1"}, "only agents can be stopped"),
    ("stop-agent", {"daemon": "agent-hv9"}, "no hypervisor 'hv9'"),
    ("start-agent", {"daemon": "agent"}, "only agents can be stopped"),
    ("switch", {"hypervisor": "hv9", "request": "{}"}, "no hypervisor 'hv9'"),
    ("switch", {"hypervisor": "hv1", "request": "garbage"}, "not a control request"),
    ("no-such-op", {}, "unknown request 'no-such-op'"),
    # the trace's questions (tunnelnet trace over a simulated lab)
    ("labview", {"call": "nope"}, "unknown call 'nope'"),
    ("labview", {"call": "ports", "hypervisor": "hv9", "bridge": "br-tun"}, "no hypervisor"),
    ("labview", {"call": "ports", "hypervisor": "hv1", "bridge": "br-x"}, "no bridge 'br-x'"),
    ("labview", {"call": "trace", "hypervisor": "hv1", "bridge": "br-tun",
                 "flow": "in_port=banana"}, "banana"),
    ("labview", {"call": "dump_flows", "hypervisor": None, "bridge": "br-tun"}, "None"),
]


@pytest.mark.parametrize(("op", "args", "words"), BAD_INPUT,
                         ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(BAD_INPUT)])
def test_a_bad_request_is_an_error_of_the_request_and_the_lab_goes_on(
        server: SimServer, op: str, args: dict[str, Any], words: str) -> None:
    before = sorted(server.lab.vms)
    reply = server.answer(SimRequest(op, args))
    assert not reply.ok and reply.bad_input, reply
    assert words in reply.error
    assert sorted(server.lab.vms) == before  # nothing half-made
    assert server.answer(SimRequest("status")).ok


def test_an_address_the_controller_gave_to_a_port_of_its_own_is_refused_by_it(
        server: SimServer) -> None:
    # a port made through the API (no VM of the lab's): only the controller knows it is taken
    ports.create(server.lab.ctl, ADMIN, {"network_id": server.lab.network_ids["red-net"],
                                          "fixed_ips": [{"ip_address": "10.0.0.77"}]})
    reply = server.answer(SimRequest("add-vm", {**ADD, "ip": "10.0.0.77"}))
    assert not reply.ok and reply.bad_input
    assert "the controller refused red9's port" in reply.error and "10.0.0.77" in reply.error
    assert "red9" not in server.lab.vms


def test_a_request_that_fails_on_a_bug_is_answered_and_does_not_end_the_lab(
        server: SimServer) -> None:
    def broken(_lab: SimLab, _args: dict[str, Any]) -> Any:
        raise KeyError("oops")

    server.handlers["broken"] = broken
    reply = server.answer(SimRequest("broken"))
    assert not reply.ok and not reply.bad_input
    assert "the lab is still up" in reply.error
    assert server.answer(SimRequest("status")).ok


def test_a_controller_change_the_agents_fail_on_does_not_end_the_lab(
        server: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("agent bug")

    monkeypatch.setattr(server.lab, "converge", failing)
    ports.create(server.lab.ctl, ADMIN, {"network_id": server.lab.network_ids["blue-net"]})
    server._step_safely()  # taken up between requests: logged, not raised
    monkeypatch.undo()
    assert server.answer(SimRequest("status")).ok


@pytest.fixture(scope="module")
def sim_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("lab")
    assert main(["lab", "--dir", str(directory), "up", "--sim", str(DEMO)]) == 0
    try:
        yield directory
    finally:
        if StateFile(directory).exists():
            main(["lab", "--dir", str(directory), "down"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "words"), [
    (["add-vm", "x", "--network", "red-net", "--hypervisor", "hv1", "--ip", "10.9.9.9"],
     "not in red-net's subnet"),
    (["add-vm", "x", "--network", "red-net", "--hypervisor", "hv1", "--ip", "10.0.0.999"],
     "not an IP address"),
    (["add-vm", "x", "--network", "red-net", "--hypervisor", "hv1", "--ip", "10.0.0.12"],
     "taken on red-net (by red2)"),
    (["ping", "red1", "nobody"], "no VM named 'nobody'"),
    (["sim-trace", "red1", "nobody"], "no VM named 'nobody'"),
    (["sim-flows", "hv7"], "no hypervisor 'hv7'"),
    (["stop", "server"], "only agents can be stopped"),
])
def test_the_commands_exit_2_say_what_was_wrong_and_status_still_works(
        sim_lab: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        words: str) -> None:
    capsys.readouterr()
    assert main(["lab", "--dir", str(sim_lab), *args]) == 2
    assert words in capsys.readouterr().err
    assert main(["lab", "--dir", str(sim_lab), "status", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["vms"]) == 6


@pytest.mark.timeout(60)
@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"v": 1, "op": 3}\n',
                                  b'{"v": 9, "op": "status"}\n', b"\n",
                                  b'{"v": 1, "op": "status", "args": "x"}\n'])
def test_garbage_on_the_socket_gets_an_error_reply_and_the_lab_stays(
        sim_lab: Path, capsys: pytest.CaptureFixture[str], line: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(sim_lab / SOCKET_NAME))
        sock.sendall(line)
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is False and reply["error"]
    capsys.readouterr()
    assert main(["lab", "--dir", str(sim_lab), "status"]) == 0


# -- vsctl, ofctl, exec and trace --live against a simulated lab ----------------------------


def _run(args: list[str], directory: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("TUNNELNET_LAB_DIR", str(directory))
    # no vswitchd in this (empty) run directory: the simulated lab is the only switch around
    monkeypatch.setenv("TUNNELNET_RUNDIR", str(directory / "no-vswitchd"))
    return main(args)


@pytest.mark.timeout(60)
def test_vsctl_and_ofctl_read_a_simulated_hypervisors_switch(
        sim_lab: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    capsys.readouterr()
    assert _run(["vsctl", "--sim", "hv1", "show", "--json"], sim_lab, monkeypatch) == 0
    bridges = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert set(bridges) == {"br-int", "br-tun"}
    assert bridges["br-tun"]["fail_mode"] == "secure"
    # hv1 has VMs of both networks: a VXLAN tunnel to hv2 (red3) and GRE to hv2 and hv3
    tunnels = {(p["type"], p["options"]["remote_ip"]) for p in bridges["br-tun"]["ports"]
               if p["type"] in ("vxlan", "gre")}
    assert tunnels == {("vxlan", "192.0.2.12"), ("gre", "192.0.2.12"), ("gre", "192.0.2.13")}

    assert _run(["ofctl", "--sim", "hv1", "dump-flows", "br-tun", "table=4"], sim_lab,
                monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    # VNI 1001 (red-net) -> a local VLAN, as Neutron's table 4 (VXLAN_TUN_TO_LV) does
    assert any("tun_id=0x3e9" in line and "mod_vlan_vid" in line for line in lines)
    assert all("table=4" in line for line in lines)

    assert _run(["ofctl", "--sim", "hv2", "trace", "br-tun",
                 "in_port=1,dl_vlan=1,dl_dst=ff:ff:ff:ff:ff:ff"], sim_lab, monkeypatch) == 0
    assert "Datapath actions" in capsys.readouterr().out

    assert _run(["vsctl", "--sim", "hv1", "list", "interface", "--json"], sim_lab,
                monkeypatch) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in records} >= {"patch-int", "patch-tun"}
    assert all(r["bfd_status"] == {} for r in records)  # no BFD in a simulation


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "words"), [
    (["ofctl", "dump-flows", "br-tun"], "'tunnelnet ofctl --sim hv1 dump-flows ...'"),
    (["vsctl", "show"], "'tunnelnet vsctl --sim hv1 show ...'"),
    (["ofctl", "--sim", "hv1", "add-flow", "br-tun", "actions=drop"],
     "programmed by its agents"),
    (["ofctl", "--sim", "hv1", "dump-ports", "br-tun"], "counts no packets"),
    (["ofctl", "--sim", "hv1", "bfd-show"], "run no BFD"),
    (["vsctl", "--sim", "hv1", "set", "interface", "vxlan-c000020c", "bfd:enable=true"],
     "programmed by its agents"),
    (["vsctl", "--sim", "hv9", "show"], "no hypervisor 'hv9'"),
    (["ofctl", "--sim", "hv1", "dump-flows", "br-x"], "no bridge named 'br-x'"),
    (["lab", "exec", "red1", "--", "ip", "addr"], "'lab ping red1 B', 'tunnelnet trace red1 B'"),
    (["trace", "red1", "red3", "--live"], "without --live this trace reads the simulated"),
])
def test_what_does_not_work_on_a_simulated_lab_points_to_what_does(
        sim_lab: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: list[str], words: str) -> None:
    capsys.readouterr()
    assert _run(args, sim_lab, monkeypatch) != 0
    assert words in capsys.readouterr().err


def test_no_simulated_lab_up_is_said_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(["ofctl", "--sim", "hv1", "dump-flows", "br-tun"], tmp_path, monkeypatch) == 1
    assert "no simulated lab is up" in capsys.readouterr().err


# -- OpenStack habits: status with headers, tunnels with their remote IPs, Nova's tap names --


@pytest.mark.timeout(60)
def test_status_names_taps_as_nova_and_tunnels_by_their_remote_ip(
        sim_lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["lab", "--dir", str(sim_lab), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    env = {}
    assert main(["lab", "--dir", str(sim_lab), "env"]) == 0
    for item in capsys.readouterr().out.split():
        if "=" in item:
            key, value = item.split("=", 1)
            env[key] = value
    from tunnelnet.client.http import Client

    with Client(env["TUNNELNET_URL"], env["TUNNELNET_TOKEN"]) as api:
        port_of = {p["name"]: p["id"] for p in api.list("port")}
    for vm in status["vms"]:
        # Nova: "tap" + the first 11 characters of the port's id
        assert vm["port_id"] == port_of[vm["name"]]
        assert vm["tap"] == "tap" + port_of[vm["name"]][:11]
    topo = load(DEMO)
    hv_ip = {hv.name: hv.ip for hv in topo.hypervisors}
    for hv in status["hypervisors"]:
        remotes = hv["tunnel_remotes"]
        assert set(remotes) == set(hv["tunnels"])
        assert set(remotes.values()) <= set(hv_ip.values()) - {hv["ip"]}

    assert main(["lab", "--dir", str(sim_lab), "status"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1].split() == ["HYPERVISOR", "UNDERLAY", "IP", "AGENT", "TUNNELS", "(port",
                               "->", "remote", "IP)"]
    hv1 = next(line for line in text if line.split()[0] == "hv1")
    assert "vxlan-c000020c -> 192.0.2.12 (hv2)" in hv1  # red1/red2 on hv1, red3 on hv2
    assert any(line.split() == ["VM", "TENANT", "NETWORK", "HOST", "IP", "MAC", "MTU", "TAP",
                                "PORT"] for line in text)


def test_a_server_that_answers_nothing_is_said_so_with_its_log(tmp_path: Path) -> None:
    import threading

    from tunnelnet.lab.sim import SimError
    from tunnelnet.lab.sim_wire import SimClient

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / SOCKET_NAME))
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        with pytest.raises(SimError, match="closed the connection without an answer; its log "
                                           f"is {tmp_path / 'sim.log'}"):
            SimClient(tmp_path, timeout=10).call("status")
    finally:
        thread.join(10)
        listener.close()
