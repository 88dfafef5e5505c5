"""``lab up --sim`` keeps a simulated lab up in the background; the lab commands answer for it
and ``lab down`` ends it, leaving nothing behind."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelnet.cli.main import main
from tunnelnet.client.http import Client
from tunnelnet.lab import processes
from tunnelnet.lab.state import StateFile

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"


@pytest.fixture
def sim_lab(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "lab"
    assert main(["lab", "--dir", str(directory), "up", "--sim", str(DEMO)]) == 0
    try:
        yield directory
    finally:
        if StateFile(directory).exists():
            main(["lab", "--dir", str(directory), "down"])


def _lab(directory: Path, *args: str) -> int:
    return main(["lab", "--dir", str(directory), *args])


@pytest.mark.timeout(300)
def test_lab_commands_answer_for_a_simulated_lab_and_down_leaves_nothing(
        sim_lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _lab(sim_lab, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert {vm["port_status"] for vm in status["vms"]} == {"ACTIVE"}
    assert len(status["vms"]) == 6

    assert _lab(sim_lab, "verify", "--json") == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["surprises"] == 0 and len(verdict["pairs"]) == 30

    # red1 asks for blue2's address; red2 has the same one in red's network and answers
    macs = {vm["name"]: vm["mac"] for vm in status["vms"]}
    assert _lab(sim_lab, "ping", "red1", "blue2", "--json") == 1
    ping = json.loads(capsys.readouterr().out)
    assert not ping["reached"] and ping["answered_by"] == macs["red2"]
    assert _lab(sim_lab, "ping", "red1", "red3") == 0
    assert _lab(sim_lab, "exec", "red1", "--", "true") == 1  # no VM processes: refused

    # the controller serves its REST API: the client sees the topology's networks
    assert _lab(sim_lab, "env") == 0
    exports = capsys.readouterr().out.split()
    env = dict(item.split("=", 1) for item in exports if "=" in item)
    with Client(env["TUNNELNET_URL"], env["TUNNELNET_TOKEN"]) as api:
        assert {n["name"] for n in api.list("network")} == {"red-net", "blue-net"}

    # a VM booted later: ACTIVE once its agent has bound it, and reachable
    assert _lab(sim_lab, "add-vm", "red4", "--network", "red-net", "--hypervisor", "hv3") == 0
    assert "ACTIVE" in capsys.readouterr().out
    assert _lab(sim_lab, "ping", "red4", "red1") == 0
    assert _lab(sim_lab, "stop", "vswitchd-hv1") == 2  # only agents in a sim: a usage error
    assert _lab(sim_lab, "stop", "agent-hv2") == 0
    capsys.readouterr()
    assert _lab(sim_lab, "status", "--json") == 0
    alive = {hv["name"]: hv["agent_alive"] for hv in json.loads(capsys.readouterr().out)[
        "hypervisors"]}
    assert alive == {"hv1": True, "hv2": False, "hv3": True}
    assert _lab(sim_lab, "start", "agent-hv2") == 0

    capsys.readouterr()
    assert _lab(sim_lab, "sim-trace", "red1", "red3", "--json") == 0  # = tunnelnet trace
    trace = json.loads(capsys.readouterr().out)
    assert trace["outcome"]["delivered"] and "br-tun" in {v["bridge"] for v in trace["visits"]}
    assert _lab(sim_lab, "sim-flows", "hv3", "br-tun", "--json") == 0
    assert any("table=22" in line for line in json.loads(capsys.readouterr().out))

    pid = StateFile(sim_lab).load().processes[0].pid
    capsys.readouterr()
    assert _lab(sim_lab, "down") == 0
    assert not StateFile(sim_lab).exists()
    assert not (sim_lab / "sim.sock").exists()
    # gone (a zombie not yet reaped counts as gone, as for the lab's daemons)
    deadline = time.monotonic() + 10
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.alive(pid)
